"""How far the frozen evaluation's findings depend on the CPU's arithmetic (not a test; prints
figures).

    .venv/bin/doit eval_seeds=32          # on a CPU without bf16 instructions: the fp32 path
    cp frozen/evaluation.json build/evaluation-fp32.json && git checkout frozen/
    .venv/bin/python benchmarks/evaluation_parity.py build/evaluation-fp32.json

The committed frozen evaluation was sampled with the UNet under bf16 autocast on a CPU with
native bf16 instructions; a CPU without them samples the same seeds in fp32
(speedups.CPU_WITHOUT_BF16), and at sizes the model was not trained for rounding alone can move
a ghost or a second body. This puts the two sets of records side by side: per size, the share of
generations the detector puts in the same class; per cell, each share under both; and for every
paired comparison the page makes (each variant against the usual UNet on the same seeds: its
share with two or more characters, exactly one, malformed, and its colour error), whether the
verdict (higher, lower, or no difference at the page's level) is the same. Only the cells both
hold in full are compared (a run cut off part-way still says something), and the file says how
many. Writes evaluation_parity-cpu.{json,csv}.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_results  # noqa: E402

SHARES = ("two_plus", "exactly_one", "malformed", "colour_error")


def verdict(test: dict) -> str:
    """A paired comparison as the page states it: higher, lower, or no difference."""
    if not test["significant"]:
        return "same"
    return "higher" if test["difference"] > 0 else "lower"


def shared_cells(cells: dict, *frozen: dict) -> dict:
    """Those of the evaluation's `cells` that every one of the `frozen` record sets holds in
    full, with their size's usual cell (what each variant is compared with): another run may
    have been cut off before it recorded them all."""
    full = {c for c, gens in cells.items()
            if all(g.id in f["records"] for f in frozen for g in gens)}
    return {c: gens for c, gens in cells.items() if c in full and (c[0], "usual") in full}


def main() -> None:
    from pipeline import evaluate, freeze, spec as specmod
    from pipeline.files import read_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", type=Path, help="a frozen evaluation made on another path")
    ap.add_argument("--frozen", type=Path, default=ROOT / freeze.FROZEN)
    ap.add_argument("--model-json", type=Path, default=ROOT / "build/model.json")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results"))
    args = ap.parse_args()
    spec = specmod.load(ROOT / "figures.toml")
    info = read_json(args.model_json)
    a, b = read_json(args.frozen), read_json(args.other)
    if a["seeds"] != b["seeds"] or a["key_inputs"]["model"] != b["key_inputs"]["model"]:
        sys.exit("the two evaluations differ in seeds or model: nothing to compare")
    every = spec.evaluation_cells(a["seeds"], info["geometry"])
    cells = shared_cells(every, a, b)
    labels = read_json(ROOT / freeze.LABELS)
    first, second = (evaluate.summary(spec, info, cells, f["records"], f["seeds"], {}, labels)
                     for f in (a, b))
    differ = sorted(k for k in a["key_inputs"] if a["key_inputs"][k] != b["key_inputs"].get(k))
    same_class = defaultdict(lambda: [0, 0])
    for gen in sorted({g.id for gens in cells.values() for g in gens}):
        rec = a["records"][gen]
        same_class[rec["width"]][0] += rec["class"] == b["records"][gen]["class"]
        same_class[rec["width"]][1] += 1
    rows, changed, compared = [], [], 0
    for ca, cb in zip(first["cells"], second["cells"]):
        assert (ca["width"], ca["variant"]) == (cb["width"], cb["variant"])
        row = {"size": ca["width"], "variant": ca["variant"], "n": ca["n"]}
        ids = ca["generations"]
        row["same_class"] = round(sum(a["records"][g]["class"] == b["records"][g]["class"]
                                      for g in ids) / len(ids), 4)
        for k in SHARES[:3]:
            row[f"{k}_first"], row[f"{k}_second"] = round(ca[k], 4), round(cb[k], 4)
        for k in SHARES:  # the usual UNet against itself: no verdict
            va, vb = ("", "") if ca["variant"] == "usual" else (verdict(ca["vs_usual"][k]),
                                                                 verdict(cb["vs_usual"][k]))
            row[f"{k}_verdict_first"], row[f"{k}_verdict_second"] = va, vb
            if va:
                compared += 1
                if va != vb:
                    changed.append(f"{ca['width']} {ca['variant']} {k}: {va} -> {vb}")
        rows.append(row)
        print(f"{row['size']:>4} {row['variant']:<17} same class {row['same_class']:.0%}  "
              f"two+ {row['two_plus_first']:.0%} / {row['two_plus_second']:.0%}  "
              f"one {row['exactly_one_first']:.0%} / {row['exactly_one_second']:.0%}")
    sizes = {str(s): {"same": n, "n": t} for s, (n, t) in sorted(same_class.items())}
    print("same class per size: " + ", ".join(f"{s}: {v['same']}/{v['n']}"
                                               for s, v in sizes.items()))
    print(f"paired verdicts: {compared - len(changed)} of {compared} the same")
    for line in changed:
        print(f"  {line}")
    context = {"what": "the frozen evaluation against one made on another arithmetic path, "
                       "same seeds, model and code",
               "first": {"path": str(args.frozen.relative_to(ROOT)), "machine": a["machine"],
                         "date": a["date"], "speedups": a["key_inputs"]["speedups"],
                         "key": a["key"]},
               "second": {"path": str(args.other), "machine": b["machine"], "date": b["date"],
                          "speedups": b["key_inputs"]["speedups"], "key": b["key"]},
               "inputs_that_differ": differ,
               "cells": len(cells), "of_cells": len(every),
               "detector": a["records"][next(iter(a["records"]))]["detector"], "seeds": a["seeds"], "same_class_per_size": sizes,
               "same_class": sum(v["same"] for v in sizes.values()),
               "generations": sum(v["n"] for v in sizes.values()),
               "verdicts_compared": compared, "verdicts_same": compared - len(changed),
               "verdicts_changed": changed}
    path = write_results(args.out, "evaluation_parity-cpu", context, rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
