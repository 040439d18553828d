"""Record a section 6 evaluation under benchmarks/results/ (not a test; prints figures).

    .venv/bin/doit eval_seeds=8                                  # run the evaluation first
    .venv/bin/python benchmarks/evaluation_results.py --seconds <wall time of that doit>

Copies build/eval/evaluation.json's per-cell numbers (shares with their Wilson intervals, mean
colour error with its bootstrap interval) into evaluation-<n>seeds-<device>.{json,csv}, with the
model, the detector version and its agreement with the hand labels, the seeds and the machine,
so that a README or note quoting an evaluation has a committed file behind it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_results  # noqa: E402


def paired(cell: dict) -> dict:
    """The cell against the usual attention on the same seeds (absent in older evaluations)."""
    vs = cell.get("vs_usual")
    if not vs:
        return {}
    two = vs["two_plus"]
    return {"two_plus_diff_vs_usual": round(two["difference"], 4),
            "two_plus_diff_lo": round(two["difference_ci"][0], 4),
            "two_plus_diff_hi": round(two["difference_ci"][1], 4),
            "two_plus_mcnemar_p": round(two["p_value"], 4),
            **({"malformed_diff_vs_usual": round(vs["malformed"]["difference"], 4),
                "malformed_mcnemar_p": round(vs["malformed"]["p_value"], 4)}
               if "malformed" in vs else {}),
            "colour_error_diff_vs_usual": round(vs["colour_error"]["difference"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval", default=str(ROOT / "build/eval/evaluation.json"))
    ap.add_argument("--seconds", type=float, default=None,
                    help="wall time of the doit run that made it (recorded as given)")
    ap.add_argument("--note", default=None, help="a note on how the time was measured")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results"))
    args = ap.parse_args()
    e = json.loads(Path(args.eval).read_text())
    if not e.get("applies"):
        sys.exit("the evaluation did not apply to this build's model; nothing to record")
    from PIL import Image

    with Image.open(ROOT / "static/images" / e["cells"][0]["sheet"]) as sheet:
        made = json.loads(sheet.info["provenance"])  # what sampled the latents
    device = made["device"]
    rows = []
    for c in e["cells"]:
        rows.append({"size": c["width"], "variant": c["variant"], "sampled_as": c["sampled_as"],
                     "n": c["n"], "two_plus": round(c["two_plus"], 4),
                     "two_plus_lo": round(c["two_plus_ci"][0], 4),
                     "two_plus_hi": round(c["two_plus_ci"][1], 4),
                     "exactly_one": round(c["exactly_one"], 4),
                     "exactly_one_lo": round(c["exactly_one_ci"][0], 4),
                     "exactly_one_hi": round(c["exactly_one_ci"][1], 4),
                     "none": round(c["none"], 4), "malformed": round(c.get("malformed", 0), 4),
                     "malformed_lo": round(c.get("malformed_ci", [0, 0])[0], 4),
                     "malformed_hi": round(c.get("malformed_ci", [0, 0])[1], 4),
                     "colour_error": round(c["colour_error"], 3),
                     "colour_error_lo": round(c["colour_error_ci"][0], 3),
                     "colour_error_hi": round(c["colour_error_ci"][1], 3),
                     **paired(c)})
        print(" ".join(f"{rows[-1][k]!s:>9}" for k in ("size", "variant", "n", "two_plus",
                                                         "exactly_one", "colour_error")))
    tag = "cuda" if str(device).startswith("cuda") else "cpu"
    context = {"what": f"section 6 evaluation: doit eval_seeds={e['seeds']}", "model": e["model"],
               "model_sha256": e["model_sha256"], "detector": e["detector"], "seeds": e["seeds"],
               "seed_range": e["seed_range"], "prompts": e["prompts"], "level": e["level"],
               "sampled_on": device, "speedups": made.get("speedups"),
               "source": e.get("source"), "agreement": e.get("agreement"),
               "doit_wall_seconds": args.seconds, "note": args.note}
    path = write_results(args.out, f"evaluation-{e['seeds']}seeds-{tag}", context, rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
