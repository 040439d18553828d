"""Today's detector against the hand labels, on decodes saved by scripts/label_sheets.py.

    python scripts/detector_agreement.py OUT_DIR      # OUT_DIR/images/<generation id>.png

For trying a change to pipeline/detector.py before re-running the evaluation: classifies every
labelled generation's decode again and prints the agreement per size (as the page reports it)
and each disagreement (generation, label, detector class, eyes per face).
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import numpy as np
    from PIL import Image

    from pipeline import detector

    images = Path(sys.argv[1]) / "images"
    labels = json.loads((ROOT / "frozen/detector_labels.json").read_text())["labels"]
    per_size: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    wrong = []
    for gen, label in sorted(labels.items()):
        path = images / f"{gen}.png"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run scripts/label_sheets.py {images.parent} "
                             f"first (after `doit eval_seeds=32`)")
        img = np.asarray(Image.open(path).convert("RGB"))
        found = detector.faces(img)
        got = detector.classify(found, detector.noise(img) > detector.NOISE)
        size = int(gen.split("-")[2].split("x")[0])
        per_size[size][0] += got == label
        per_size[size][1] += 1
        if got != label:
            wrong.append(f"  {gen}: labelled {label}, detector {got} "
                         f"(eyes {[f['eyes'] for f in found]})")
    agree = sum(a for a, _ in per_size.values())
    print(f"detector version {detector.VERSION}: {agree} of {len(labels)} agree; "
          + ", ".join(f"{s}: {a}/{n}" for s, (a, n) in sorted(per_size.items())))
    print("\n".join(wrong))


if __name__ == "__main__":
    main()
