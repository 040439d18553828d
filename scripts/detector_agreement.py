"""Today's detector against the hand labels, on decodes saved by scripts/label_sheets.py.

    python scripts/detector_agreement.py OUT_DIR ...  # OUT_DIR/images/<generation id>.png
    python scripts/detector_agreement.py OUT_DIR ... --before main  # what a change moved
    python scripts/detector_agreement.py OUT_DIR ... --partial  # the decodes there are so far

For trying a change to pipeline/detector.py before re-running the evaluation: classifies every
labelled generation's decode again and prints the agreement per size (as the page reports it)
and each disagreement (generation, label, detector class, eyes per face). With `--before REV`
the detector of that git revision classifies the same decodes too: its agreement, and every
generation whose class the change moved, with its label. `--partial` measures the labelled
decodes the folders hold (a `label_sheets.py --labelled --resample` run still going) and says
how many are missing, rather than refusing. It also says how many decodes today's detector
gives the frozen evaluation's class (frozen/evaluation.json, when made by the same detector
version): decodes sampled again on another CPU kind (`--resample`) are the frozen images only up
to bf16 rounding, which can move an image that lies at one of the detector's thresholds.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def detector_at(rev: str) -> types.ModuleType:
    """pipeline/detector.py as git revision `rev` has it, as a module of its own."""
    try:
        source = subprocess.run(["git", "show", f"{rev}:pipeline/detector.py"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError as err:
        raise SystemExit(f"--before {rev}: git has no pipeline/detector.py there "
                         f"({err.stderr.strip()})") from None
    module = types.ModuleType(f"detector_at_{rev}")
    exec(compile(source, f"{rev}:pipeline/detector.py", "exec"), module.__dict__)
    return module


def summary(found: dict) -> str:
    line = (f"detector version {found['detector']}: {found['agree']} of {found['n']} agree; "
            + ", ".join(f"{s['size']}: {s['agree']}/{s['n']}" for s in found["sizes"]))
    if found.get("held_out"):
        held = found["held_out"]
        line += (f"\n  held out: {held['agree']} of {held['n']}; "
                 + ", ".join(f"{s['size']}: {s['agree']}/{s['n']}" for s in held["sizes"]))
    return line


def main(argv: list[str] | None = None) -> None:
    import numpy as np
    from PIL import Image

    from pipeline import detector, evaluate, freeze
    from scripts.label_sheets import decode_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="label_sheets.py output folders")
    ap.add_argument("--before", metavar="REV", help="also the detector of this git revision")
    ap.add_argument("--partial", action="store_true", help="measure the decodes there are")
    args = ap.parse_args(argv)
    dirs = [d / "images" for d in args.dirs]
    labels = json.loads((ROOT / freeze.LABELS).read_text())
    before = detector_at(args.before) if args.before else None
    records, earlier, missing = {}, {}, []
    for gen in sorted(labels["labels"]):
        path = decode_path(gen, dirs)
        if path is None and args.partial:
            missing.append(gen)
            continue
        if path is None:
            raise SystemExit(f"{gen}.png is in none of {', '.join(map(str, dirs))}: run "
                             f"scripts/label_sheets.py OUT_DIR (with the --after and --skip of "
                             f"the batch that labelled it, or --labelled) first, or measure the "
                             f"decodes there are with --partial")
        img = np.asarray(Image.open(path).convert("RGB"))
        records[gen] = {**detector.analyse(img), "width": img.shape[1]}
        if before is not None:
            earlier[gen] = {**before.analyse(img), "width": img.shape[1]}
    if missing:
        print(f"{len(missing)} of {len(labels['labels'])} labelled decodes not there yet")
    if before is not None:
        found = evaluate.agreement(labels, earlier, labels["model"])
        print(f"{args.before}: " + summary({**found, "detector": before.VERSION, "held_out": None}))
    print(summary(evaluate.agreement(labels, records, labels["model"])))
    frozen = json.loads((ROOT / freeze.FROZEN).read_text())["records"]
    same = [g for g in records if g in frozen and frozen[g].get("detector") == detector.VERSION]
    if same:
        moved = [g for g in same if frozen[g]["class"] != records[g]["class"]]
        print(f"  the frozen evaluation's class on {len(same) - len(moved)} of {len(same)} "
              f"decodes (version {detector.VERSION} on both)"
              + "".join(f"\n    not on {g}: frozen {frozen[g]['class']} {frozen[g]['eyes']}, "
                        f"here {records[g]['class']} {records[g]['eyes']}, labelled "
                        f"{labels['labels'][g]}" for g in moved))
    if before is not None:
        for gen in sorted(records):
            if records[gen]["class"] != earlier[gen]["class"]:
                print(f"  moved {gen}: labelled {labels['labels'][gen]}, "
                      f"{earlier[gen]['class']} -> {records[gen]['class']}")
    for gen, r in sorted(records.items()):
        if r["class"] != labels["labels"][gen]:
            print(f"  {gen}: labelled {labels['labels'][gen]}, detector {r['class']} "
                  f"(eyes {r['eyes']})")


if __name__ == "__main__":
    main()
