"""Benchmark: how long the install `make article` starts with takes (not a test; prints figures).

    python benchmarks/install_speed.py [--rounds 2] [--tag avx2]

In a fresh clone of the committed HEAD, new venvs are installed in turn, interleaved:
  - pip: the recipe the Makefile had before scripts/install.py (a venv, `pip install --upgrade
    pip`, `pip install -e .`: pip compiles bytecode one file at a time);
  - uv: `python3 scripts/install.py VENV` (uv, given pip's configuration, bytecode on every core).
It reports each install's seconds, the median of each and their ratio, and whether the two
installed the same distributions at the same versions (pip, uv and setuptools aside, which
are the installers' own). Both draw on what is cached (pip's cache, uv's cache, wheels on local
disk); run it twice and take the second where a cache was cold.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_results  # noqa: E402

INSTALLERS = ("pip", "uv")
OWN = {"pip", "uv", "setuptools"}  # the installers' own distributions


def install(how: str, clone: Path, env: Path) -> float:
    quiet = {"capture_output": True, "text": True, "check": True}
    t = time.perf_counter()
    if how == "pip":
        subprocess.run([sys.executable, "-m", "venv", str(env)], **quiet)
        subprocess.run([str(env / "bin" / "pip"), "install", "-q", "--upgrade", "pip"], **quiet)
        subprocess.run([str(env / "bin" / "pip"), "install", "-q", "-e", str(clone)], **quiet)
    else:
        subprocess.run([sys.executable, str(clone / "scripts" / "install.py"), str(env)], **quiet)
    return time.perf_counter() - t


def distributions(env: Path) -> dict[str, str]:
    """name -> version of what `env` holds, the installers' own and the project aside."""
    listed = subprocess.run(
        [str(env / "bin" / "python"), "-c",
         "import importlib.metadata as m; print('\\n'.join(sorted("
         "f'{d.metadata[\"Name\"]}=={d.version}' for d in m.distributions())))"],
        capture_output=True, text=True, check=True).stdout.split()
    pairs = (line.split("==") for line in listed)
    return {name.lower().replace("_", "-"): version for name, version in pairs
            if name.lower() not in OWN and name != "sdsizes-article"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="installs of each kind, interleaved")
    ap.add_argument("--tag", default="", help="appended to the results' name (e.g. avx2)")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="install-bench-"))
    try:
        clone = scratch / "clone"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        seconds: dict[str, list[float]] = {how: [] for how in INSTALLERS}
        held = {}
        for r in range(args.rounds):
            for how in INSTALLERS:
                env = scratch / f"{how}-{r}"
                seconds[how].append(install(how, clone, env))
                print(f"round {r + 1}: {how:3s} {seconds[how][-1]:7.2f} s", flush=True)
                held[how] = distributions(env)
                shutil.rmtree(env)
        median = {how: statistics.median(s) for how, s in seconds.items()}
        differ = sorted(k for k in held["pip"].keys() | held["uv"].keys()
                        if held["pip"].get(k) != held["uv"].get(k))
        print(f"median: pip {median['pip']:.2f} s, uv {median['uv']:.2f} s, "
              f"{median['pip'] / median['uv']:.2f}x; distributions that differ: {differ or 'none'}")
        context = {"rounds": args.rounds, "ratio_pip_over_uv": round(median["pip"] / median["uv"], 2),
                   "distributions": len(held["uv"]), "distributions_that_differ": differ}
        rows = [{"installer": how, "round": r + 1, "seconds": round(s, 2)}
                for how in INSTALLERS for r, s in enumerate(seconds[how])]
        rows += [{"installer": how, "round": "median", "seconds": round(median[how], 2)}
                 for how in INSTALLERS]
        write_results(ROOT / "benchmarks" / "results", "install_speed", context, rows, tag=args.tag)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
