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
    from pipeline import model, preview_model

    tmp = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    directory = preview_model.build(tmp / shape, shape=shape)
    built = time.perf_counter() - t
    model.prepare(str(directory), tmp / "model.json")
    return model.load(str(tmp / "model.json"), device), directory, built


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def write_results(out_dir, name: str, context: dict, rows: list[dict], tag: str = "") -> Path:
    """Write a benchmark's figures as JSON (context + rows) and CSV (rows) under `out_dir`,
    stamped with the machine, the software versions and the date; a `tag` (e.g. for a model that
    is not the shipped one) is appended to the name. Returns the JSON's path."""
    import csv
    import datetime
    import json
    import os
    import platform

    import torch

    try:
        import diffusers
        diffusers_version = diffusers.__version__
    except ImportError:
        diffusers_version = None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{name}-{tag}" if tag else name
    stamp = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
             "python": platform.python_version(), "torch": torch.__version__,
             "diffusers": diffusers_version,
             "date": datetime.date.today().isoformat()}
    path = out / f"{name}.json"
    path.write_text(json.dumps({**stamp, **context, "rows": rows}, indent=1) + "\n")
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path
