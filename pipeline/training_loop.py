"""One resumable training loop, shared by both stages of pipeline/train.py (VAE, then UNet).

A stage is a `Stage` (its length, learning-rate schedule, checkpoint cadence and the settings that
decide its result) and a step function `step_fn(step) -> (loss, reported)` that draws its batch
from `step` alone and returns the loss to minimise and the number its curve records. `fit` runs
steps until the stage is done, a deadline passes or `stop_at` steps are reached, checkpointing
through Accelerate's `save_state` (the modules, the optimiser, every RNG) plus what a loop owns:
the step, the running loss, the curve, the wall time so far, the settings and diffusers' `EMAModel`
when the stage keeps an average. Resuming loads all of that (`load_state`), so a run stopped at
any step and resumed gives the run that never stopped: the same weights, curve and record (a test
stops each stage at several steps).

A checkpoint made under other settings is refused with one line naming what differs: its weights
belong to another run. Checkpoints are written whole to a temporary folder and swapped in by
renames, so an interrupted write leaves the previous checkpoint usable.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .model import ModelError

SETTINGS_FILE = "settings.json"


class CheckpointError(ModelError):
    """A checkpoint that belongs to another run (other settings)."""


def lr_at(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(total - warmup, 1)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


@dataclass
class Stage:
    name: str                 # its checkpoint folder in the work directory
    steps: int
    lr: float
    warmup: int
    checkpoint_every: int
    settings: dict            # everything that decides the stage's result (JSON-able)
    smoothing: float = 0.0    # the curve's running average: r = s*r + (1-s)*reported (0: raw)
    label: str = "loss"       # what the progress bar calls the number

    @property
    def curve_every(self) -> int:
        return max(1, min(25, self.steps // 20))


@dataclass
class Progress:
    """What the loop itself owns; checkpointed with the modules (Accelerate's custom state)."""
    step: int = 0
    running: float | None = None
    curve: list = field(default_factory=list)
    seconds: float = 0.0      # wall time of every invocation up to the last checkpoint

    def state_dict(self) -> dict:
        return {"step": self.step, "running": self.running, "curve": self.curve,
                "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.running = state["step"], state["running"]
        self.curve, self.seconds = [list(p) for p in state["curve"]], state["seconds"]


def checkpoint_folder(work: Path, name: str) -> Path | None:
    """The stage's checkpoint to resume from: the folder, or the previous one when a run was
    stopped between the two renames that swap a new checkpoint in; None before the first."""
    for folder in (work / name, work / f"{name}.previous"):
        if (folder / SETTINGS_FILE).exists():
            return folder
    return None


def check_settings(folder: Path, settings: dict) -> None:
    saved = json.loads((folder / SETTINGS_FILE).read_text())
    if saved != settings:
        keys = sorted(set(saved) | set(settings), key=str)
        diff = ", ".join(f"{k} {saved.get(k, '(none)')!r} -> {settings.get(k, '(none)')!r}"
                         for k in keys if saved.get(k) != settings.get(k))
        if len(diff) > 300:
            diff = diff[:300] + " ..."
        raise CheckpointError(f"{folder} was made with other settings ({diff}); delete it to "
                              f"train that stage again, or give another --work directory")


def _save(accelerator, work: Path, stage: Stage) -> None:
    target = work / stage.name
    partial, previous = work / f"{stage.name}.partial", work / f"{stage.name}.previous"
    shutil.rmtree(partial, ignore_errors=True)
    accelerator.save_state(str(partial))
    (partial / SETTINGS_FILE).write_text(json.dumps(stage.settings, sort_keys=True))
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        target.rename(previous)
    partial.rename(target)
    shutil.rmtree(previous, ignore_errors=True)


def accelerator_for(device: str):
    """An Accelerator that leaves device placement and precision to the caller (the stages
    autocast to bf16 themselves), used here for its checkpointing."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    return Accelerator(cpu=not device.startswith("cuda"), device_placement=False,
                       project_config=ProjectConfiguration(automatic_checkpoint_naming=False))


def fit(stage: Stage, modules: list[torch.nn.Module], optimizer: torch.optim.Optimizer,
        step_fn: Callable[[int], tuple[torch.Tensor, float]], work: Path, device: str,
        deadline: float = math.inf, stop_at: int | None = None, ema=None,
        clip: float | None = None, progress: Callable | None = None) -> tuple[Progress, bool]:
    """Run (or resume) `stage`. Returns its Progress and whether it finished. The modules are
    left in train mode with their trained (not averaged) weights; `ema` holds the average."""
    accelerator = accelerator_for(device)
    *modules, optimizer = accelerator.prepare(*modules, optimizer)
    state = Progress()
    accelerator.register_for_checkpointing(state)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    folder = checkpoint_folder(work, stage.name)
    if folder is not None:
        check_settings(folder, stage.settings)
        accelerator.load_state(str(folder))
        if ema is not None:
            ema.to(device)
    started, at_start = time.time(), state.seconds
    params = [p for m in modules for p in m.parameters()]
    for m in modules:
        m.train()
    bar = progress(stage.steps, state.step, stage.name) if progress else None
    while state.step < stage.steps:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(state.step, stage.lr, stage.warmup, stage.steps)
        loss, reported = step_fn(state.step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        if ema is not None:
            ema.step(params)
        state.step += 1
        state.running = (reported if state.running is None or not stage.smoothing
                         else stage.smoothing * state.running + (1 - stage.smoothing) * reported)
        if state.step % stage.curve_every == 0 or state.step == stage.steps:
            state.curve.append([state.step, round(state.running, 6)])
            if bar:
                bar.set_postfix({stage.label: f"{state.running:.5f}"})
        if bar:
            bar.update(1)
        stopping = time.time() > deadline or state.step == stop_at
        if state.step % stage.checkpoint_every == 0 or state.step == stage.steps or stopping:
            state.seconds = at_start + time.time() - started
            _save(accelerator, work, stage)
            if stopping and state.step < stage.steps:
                break
    if bar:
        bar.close()
    state.seconds = at_start + time.time() - started
    return state, state.step >= stage.steps
