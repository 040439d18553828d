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


PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense fp16/bf16 tensor-core peak


def peak_tflops(name: str) -> float | None:
    """The device's dense fp16 tensor-core peak in TFLOP/s, where the table knows it."""
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def seconds_by_kind(times: dict[str, float]) -> dict[str, float]:
    """Task seconds (pipeline/progress.TIMES) summed per kind of task (the name before the
    colon), largest first, to the hundredth."""
    kinds: dict[str, float] = {}
    for task, sec in times.items():
        kind = task.split(":")[0]
        kinds[kind] = kinds.get(kind, 0.0) + sec
    return dict(sorted(((k, round(v, 2)) for k, v in kinds.items()), key=lambda kv: -kv[1]))


def unet_flops(unet, geometry: dict, size: int) -> float:
    """FLOPs of one UNet forward on one sample at size² (counted with FlopCounterMode, not
    estimated), on the UNet's own device and dtype."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    p = next(unet.parameters())
    side = size // geometry["vae_factor"]
    x = torch.zeros(1, geometry["latent_channels"], side, side, device=p.device, dtype=p.dtype)
    ctx = torch.zeros(1, 77, geometry["cross_attention_dim"], device=p.device, dtype=p.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(x, torch.tensor([500.0], device=p.device), encoder_hidden_states=ctx)
    return float(counter.get_total_flops())


def share(part: float, whole: float | None) -> float | None:
    """part / whole to three significant figures (None without a whole): a small workload's
    fraction of a peak stays a positive number instead of rounding to 0.0."""
    return float(f"{part / whole:.3g}") if whole else None


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
    import io
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
    import subprocess

    try:  # the code it measured: the commit, and whether the tree had changes beyond it
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    from pipeline.machine import describe

    stamp = {"commit": commit, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
             "cpu": describe("cpu"),
             "python": platform.python_version(), "torch": torch.__version__,
             "diffusers": diffusers_version,
             "date": datetime.date.today().isoformat()}
    from pipeline.files import atomic_write  # whole or not at all: a stage may be killed mid-run

    path = atomic_write(out / f"{name}.json",
                        (json.dumps({**stamp, **context, "rows": rows}, indent=1) + "\n").encode())
    table = io.StringIO(newline="")
    w = csv.DictWriter(table, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write(out / f"{name}.csv", table.getvalue().encode())
    return path
