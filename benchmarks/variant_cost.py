"""What each variant (figures.toml [variant.*]) costs in time against the usual UNet (not a test;
prints figures).

    python benchmarks/variant_cost.py                      # CPU, the shipped preview model
    python benchmarks/variant_cost.py --device cuda --model <SD 1.5 dir or hub id>

Samples one whole generation (the article's sampler, all its steps, with the default speed-ups of
the device) per variant at each size, the variants interleaved within each of --repeats rounds so
that drift in the machine's speed falls on all of them alike, and reports the median seconds per
generation and its ratio to the usual UNet's at the same size, measured side by side in one run.
The variants are each size's evaluated ones ([evaluation] more groups and sweeps).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import ROOT, sync, write_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="default: the shipped preview model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="768,256")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    import torch

    from pipeline import model, sampling, spec as specmod
    from pipeline.spec import Generation
    from pipeline.variants import is_identity

    spec = specmod.load(ROOT / "figures.toml")
    model_json = Path(tempfile.mkdtemp()) / "model.json"
    model.prepare(args.model or str(model.PREVIEW_DIR), model_json)
    comps = model.load(str(model_json), args.device)
    geometry = comps.info["geometry"]
    e = spec.evaluation
    groups = [*e.get("more", ()), *({"sizes": (s["size"],), "variants": s["variants"]}
                                    for s in e.get("sweeps", ()))]
    rows = []
    for size in map(int, args.sizes.split(",")):
        names = ["usual"] + sorted({v for g in groups for v in g["variants"]
                                    if (size, size) in g["sizes"] and v != "usual"
                                    and not is_identity(spec.variants, v, geometry, size, size)})
        times: dict[str, list[float]] = {v: [] for v in names}
        for v in names:  # warm-up: first calls allocate and pick kernels
            sampling.sample(comps, spec, [Generation("miko", 1, size, size, v)])
        for r in range(args.repeats):
            for v in names:
                sync(comps.device)
                t = time.perf_counter()
                sampling.sample(comps, spec, [Generation("miko", 1 + r, size, size, v)])
                sync(comps.device)
                times[v].append(time.perf_counter() - t)
        base = statistics.median(times["usual"])
        for v in names:
            med = statistics.median(times[v])
            rows.append({"size": size, "variant": v, "kind": spec.variants[v]["kind"],
                         "seconds": round(med, 3), "ratio": round(med / base, 3),
                         "calls": sampling.model_calls(spec, Generation("miko", 1, size, size, v),
                                                       geometry)})
            print(f"{size}x{size} {v:18s} {med:7.3f} s/generation  {med / base:5.2f}x usual")
    context = {"device": sampling.device_name(comps), "model": comps.info["id"],
               "repeats": args.repeats, "threads": torch.get_num_threads(),
               "speedups": list(comps.speedups)}
    path = write_results(args.out, "variant_cost", context, rows,
                         tag="cpu" if args.device == "cpu" else "cuda")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
