"""Shared fixtures. `project` builds the default article once per session, in a copy of the
repository, with the preview model; the build is deliberately killed half-way first, so every test
that reads the site also checks that an interrupted build recovers."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["dodo.py", "figures.toml", "pipeline", "models", "site", "content", "frozen",
                 "static/images/.gitkeep", "docs", "benchmarks/results", "benchmarks/README.md"]


def copy_project(dest: Path) -> Path:
    for item in PROJECT_FILES:
        src = ROOT / item
        if not src.exists():  # frozen/ exists once a full evaluation has been frozen
            continue
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / item)
    return dest


def doit(cwd: Path, *args: str, check: bool = True, timeout: float = 1200):
    env = {**os.environ, "PYTHONPATH": str(cwd), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def executed(proc) -> list[str]:
    """Names of the tasks doit ran (it prints '.  task' for those, '-- task' for up-to-date)."""
    return [line[3:].strip() for line in proc.stdout.splitlines() if line.startswith(".  ")]


def interrupted_then_finished_build(cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(cwd), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "doit"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    latents = cwd / "build" / "latents"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if latents.is_dir() and len(list(latents.glob("*.safetensors"))) >= 3:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    doit(cwd)


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    """The built project. ARTICLE_PROJECT=<dir> reuses a scratch copy of an already-built tree
    for quick checks while developing; the tests edit it (seeds, prose), so never point it at
    your working tree."""
    if os.environ.get("ARTICLE_PROJECT"):
        return Path(os.environ["ARTICLE_PROJECT"])
    cwd = copy_project(tmp_path_factory.mktemp("article"))
    interrupted_then_finished_build(cwd)
    return cwd


@pytest.fixture(scope="session")
def preview_model_dir(tmp_path_factory) -> Path:
    from pipeline import preview_model

    return preview_model.build(tmp_path_factory.mktemp("model") / "preview")


def pytest_collection_modifyitems(items):
    """Every test that reads the built article is slow (the build takes minutes): `pytest -m
    "not slow"` is the edit loop, plain `pytest` (CI) runs everything."""
    for item in items:
        if "project" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


# Drawn test images shared by the detector's and the appearance reading's tests.
def _dim_face(img: np.ndarray, centre=(200, 250), colour=(120, 118, 112)) -> np.ndarray:
    """The image with a face of dim grey skin (luma about 118) and two dark eyes drawn on it."""
    out = img.copy()
    yy, xx = np.mgrid[:out.shape[0], :out.shape[1]]
    cy, cx = centre
    out[(yy - cy) ** 2 + (xx - cx) ** 2 < 60 ** 2] = colour
    out[((yy - cy + 10) ** 2 + (xx - cx + 25) ** 2 < 9 ** 2)
        | ((yy - cy + 10) ** 2 + (xx - cx - 25) ** 2 < 9 ** 2)] = (30, 20, 40)
    return out


def _speckled(img: np.ndarray, amount: float = 40) -> np.ndarray:
    """The image with strong per-pixel noise, as a fix that breaks the denoising leaves it."""
    noise = np.random.default_rng(0).normal(0, amount, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
