"""Shared by the benchmarks: build a model of one shape and load it through pipeline.model."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def build_and_load(shape: str, device: str):
    """(components, directory, seconds to build): the preview model or a random model of SD 1.5's
    exact architecture (shape="sd15", whose timings are the real model's), loaded the way the
    pipeline loads any model (fp16 on CUDA)."""
    from pipeline import files, geometry, model, preview_model

    tmp = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    directory = preview_model.build(tmp / shape, shape=shape)
    built = time.perf_counter() - t
    info = model.fingerprint(model.resolve(str(directory)), directory)
    info["geometry"] = geometry.load(directory)
    files.write_json(tmp / "model.json", info)
    return model.load(str(tmp / "model.json"), device), directory, built


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
