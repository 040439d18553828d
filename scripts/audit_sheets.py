"""Sheets for a second, closer look at labelled decodes that the labelling sheets shrank most.

    python scripts/audit_sheets.py OUT_DIR LABEL_DIR ...  # LABEL_DIR/images/<generation id>.png

The labelling sheets (scripts/label_sheets.py) show every decode at 256 px, so a 640 or 768 px
decode at less than half its size, where a faint third eye or a ghost's features can vanish.
This picks every labelled generation whose decode is wider than twice that (of those labelled on
256 px sheets: not a held-out batch labelled at a larger `side`), shuffles them (a
fixed seed, so the sheets are the same on every run) and writes OUT_DIR/sheet-NN.png with each
at SIDE px, numbered only: no generation id, no earlier label and no detector output, so the
second look is blind to all three. OUT_DIR/index.json maps the numbers back.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.label_sheets import (SIDE as LABEL_SIDE, decode_path, labelled_closer,  # noqa: E402
                                  write_sheets)

SIDE, SEED = 400, 2026


def main() -> None:
    from PIL import Image

    from pipeline import freeze

    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    out, dirs = Path(sys.argv[1]), [Path(d) / "images" for d in sys.argv[2:]]
    found = json.loads((ROOT / freeze.LABELS).read_text())
    paths = {}
    for gen in sorted(set(found["labels"]) - labelled_closer(found)):
        path = decode_path(gen, dirs)
        if path is None:
            raise SystemExit(f"{gen}.png is in none of {', '.join(map(str, dirs))}")
        with Image.open(path) as img:
            if img.width > 2 * LABEL_SIDE:
                paths[gen] = path
    gens = sorted(paths)
    random.Random(SEED).shuffle(gens)
    out.mkdir(parents=True, exist_ok=True)
    sheets = write_sheets(out, [paths[g] for g in gens], SIDE)
    (out / "index.json").write_text(json.dumps(dict(enumerate(gens)), indent=1))
    print(f"{len(gens)} decodes on {sheets} sheets in {out}")


if __name__ == "__main__":
    main()
