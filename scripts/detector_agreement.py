"""Today's detector against the hand labels, on decodes saved by scripts/label_sheets.py.

    python scripts/detector_agreement.py OUT_DIR ...  # OUT_DIR/images/<generation id>.png

For trying a change to pipeline/detector.py before re-running the evaluation: classifies every
labelled generation's decode again and prints the agreement per size (as the page reports it)
and each disagreement (generation, label, detector class, eyes per face).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import numpy as np
    from PIL import Image

    from pipeline import detector, evaluate
    from scripts.label_sheets import decode_path

    dirs = [Path(d) / "images" for d in sys.argv[1:]]
    if not dirs:
        raise SystemExit(__doc__)
    labels = json.loads((ROOT / "frozen/detector_labels.json").read_text())
    records = {}
    for gen in sorted(labels["labels"]):
        path = decode_path(gen, dirs)
        if path is None:
            raise SystemExit(f"{gen}.png is in none of {', '.join(map(str, dirs))}: run "
                             f"scripts/label_sheets.py OUT_DIR (with the --after and --skip of "
                             f"the batch that labelled it) first, after `doit eval_seeds=32`")
        img = np.asarray(Image.open(path).convert("RGB"))
        records[gen] = {**detector.analyse(img), "width": img.shape[1]}
    found = evaluate.agreement(labels, records, labels["model"])
    print(f"detector version {found['detector']}: {found['agree']} of {found['n']} agree; "
          + ", ".join(f"{s['size']}: {s['agree']}/{s['n']}" for s in found["sizes"]))
    if found["held_out"]:
        held = found["held_out"]
        print(f"  held out: {held['agree']} of {held['n']}; "
              + ", ".join(f"{s['size']}: {s['agree']}/{s['n']}" for s in held["sizes"]))
    for gen, label in sorted(labels["labels"].items()):
        r = records[gen]
        if r["class"] != label:
            print(f"  {gen}: labelled {label}, detector {r['class']} (eyes {r['eyes']})")


if __name__ == "__main__":
    main()
