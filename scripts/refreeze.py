"""Refreeze the 32-seed evaluation and record everything that quotes it, in the right order.

    python scripts/refreeze.py freeze   # after committing a change to what the key holds
    git add frozen && git commit -m "frozen evaluation refrozen: ..."
    python scripts/refreeze.py record   # the results files and the docs rendered from them
    python scripts/refreeze.py record --dry-run   # what it would run

Anything the frozen evaluation's key holds (pipeline/freeze.py: the detector, the decoder, the
sampling path, the [evaluation] table, the model, the versions) changed: a plain `doit` then
computes one generation per cell and the page says so, until the evaluation is frozen again.

`freeze` runs `doit eval_seeds=32` (about 15 min with the latents cached, 35 min and more from a
clean tree on two cores) and keeps its wall time in build/refreeze.json. `record` then writes the
results files that quote the evaluation (benchmarks/evaluation_results.py, measure_results.py
after a default build, conditioning.py) and renders the docs from them. A commit lies between the
two because every results file is stamped with `git describe --dirty`: `record` refuses a tree
with uncommitted changes, `freeze` one whose pipeline or spec has them (the key would then name
code no commit holds).

Only on a CPU with bf16 instructions: the frozen records were sampled under that CPU kind's
default (bf16 autocast). A CPU without them samples fp32 images of the same seeds by default and
would freeze other images, which the labels in frozen/detector_labels.json were not given for;
emulating bf16 there takes hours (about 40 s per 768² generation on two cores).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = ROOT / ".venv" / "bin"
TIMING = ROOT / "build" / "refreeze.json"
KEYED = ("pipeline", "figures.toml", "models")  # what the key reads, besides package versions


def freeze_steps() -> list[list[str]]:
    return [[str(BIN / "doit"), "eval_seeds=32"]]


def record_steps(seconds: float) -> list[list[str]]:
    python = str(BIN / "python")
    return [[python, "benchmarks/evaluation_results.py", "--seconds", f"{seconds:.1f}",
             "--note", "wall time of `doit eval_seeds=32` (scripts/refreeze.py freeze)"],
            [str(BIN / "doit")],  # the default build measures the article's own generations
            [python, "benchmarks/measure_results.py"],
            [python, "benchmarks/conditioning.py"],
            [python, "-c", "import pipeline.documents as d; d.run()"]]


def refusal(step: str, bf16: list[str], dirty: list[str]) -> str | None:
    """Why `step` must not run on this machine and tree (one line), or None."""
    if not bf16:
        return ("this CPU has no bf16 instructions (avx512_bf16, amx_bf16): the frozen records "
                "were sampled under a bf16 CPU's default, and this one would freeze fp32 images "
                "the labels were not given for; run it on a CPU with avx512_bf16")
    keyed = [p for p in dirty if p.split("/")[0] in KEYED]
    if step == "freeze" and keyed:
        return (f"uncommitted changes to what the key holds ({', '.join(keyed)}): commit them "
                f"first, so that the frozen key names code a commit holds")
    if step == "record" and dirty:
        return (f"uncommitted changes ({', '.join(dirty)}): commit the refrozen evaluation "
                f"first; every results file is stamped with `git describe --dirty`")
    return None


def dirty_paths() -> list[str]:
    out = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return sorted(line[3:] for line in out.splitlines() if line[3:])


def main(argv: list[str] | None = None) -> int:
    from pipeline import machine

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("freeze", "record"))
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    why = refusal(args.step, machine.bf16_flags(), dirty_paths())
    if why and not args.dry_run:
        print(f"refreeze.py {args.step}: {why}", file=sys.stderr)
        return 2
    if args.step == "freeze":
        steps = freeze_steps()
    else:
        seconds = json.loads(TIMING.read_text())["seconds"] if TIMING.is_file() else None
        if seconds is None and not args.dry_run:
            print(f"refreeze.py record: no {TIMING.relative_to(ROOT)}; run "
                  f"`python scripts/refreeze.py freeze` first", file=sys.stderr)
            return 2
        steps = record_steps(seconds or 0.0)
    for cmd in steps:
        print("+", " ".join(cmd), flush=True)
        if args.dry_run:
            continue
        start = time.monotonic()
        subprocess.run(cmd, cwd=ROOT, check=True)
        if args.step == "freeze":
            TIMING.parent.mkdir(exist_ok=True)
            TIMING.write_text(json.dumps({"seconds": round(time.monotonic() - start, 1)}))
    if args.dry_run and why:
        print(f"(would refuse: {why})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
