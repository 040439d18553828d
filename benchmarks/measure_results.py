"""Record what the default build's model shows on the article's own generations (prints figures).

    .venv/bin/doit                                   # a clean build first
    .venv/bin/python benchmarks/measure_results.py   # -> benchmarks/results/miniature_measure-<device>.json

Copies three things the build measured into one results file the README can cite: the detector
over every VAE decode the article shows (build/measure.json: per size and attention variant, the
share of images with exactly one / two or more / no character, and the mean colour error), the
approximate decoder's held-out PSNR (build/approx/), and the attention-entropy probe's first level
(build/data/article.json: usual and logit-scale entropy per size, and log n).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import ROOT, write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--tag", default="", help="suffix for a model that is not the shipped one")
    args = ap.parse_args()
    build = Path(args.build)
    measure = json.loads((build / "measure.json").read_text())
    if not measure.get("applies"):
        raise SystemExit("the detector did not apply to this build's model; nothing to record")
    article = json.loads((build / "data" / "article.json").read_text())
    fit = article["approx"]["fit"]
    manifest = json.loads((ROOT / "static" / "images" / "manifest.json").read_text())
    device = next(r["device"] for r in manifest["images"].values() if "device" in r)
    rows = []
    for size, variants in sorted(measure["summary"].items(), key=lambda kv: int(kv[0])):
        for variant, cell in sorted(variants.items()):
            rows.append({"size": int(size), "attention": variant, "n": cell["n"],
                         "exactly_one": round(cell["exactly_one"], 4),
                         "two_plus": round(cell["two_plus"], 4), "none": round(cell["none"], 4),
                         "colour_error": round(cell["colour_error"], 2),
                         **{k: round(cell[k], 4) for k in ("saturation", "contrast", "clipped")}})
            print(" ".join(f"{rows[-1][k]!s:>16}" for k in list(rows[-1])[:7]))
    probe = {size: {"uniform": cells["usual"]["first"]["uniform"],
                    "usual": cells["usual"]["first"]["entropy"],
                    "logit_scale": cells.get("logit-scale", {}).get("first", {}).get("entropy"),
                    "usual_gap": cells.get("usual_gap"), "logit_shift": cells.get("logit_shift")}
             for size, cells in article["probe"]["summary"].items()}
    for size, p in probe.items():
        print(f"probe {size}: {p}")
    print(f"approximate decoder: held-out {fit['psnr_heldout_db']} dB, train {fit['psnr_train_db']} dB")
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    context = {"what": "detector over the article's own VAE decodes, approximate decoder and "
                       "entropy probe of a clean `doit` (benchmarks/measure_results.py)",
               "model": measure["model"], "detector": measure["detector"], "device": device,
               "training_set": {k: round(v["mean"], 4) for k, v in measure["reference"].items()},
               "approx_psnr_heldout_db": fit["psnr_heldout_db"],
               "approx_psnr_train_db": fit["psnr_train_db"], "probe_first_level": probe}
    path = write_results(args.out, f"miniature_measure-{kind}", context, rows, args.tag)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
