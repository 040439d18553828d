"""Installing a variant (pipeline/variants.py) on a loaded UNet around sampling, and removing it.

Every kind that changes the UNet is one function with one signature,

    install(unet, change, geometry, width, height, window) -> undo

where `change` is the variant's checked table, `geometry` the model's (pipeline/geometry.py),
width x height the requested image size, and `window` says whether the current sampling step is
inside the change's step window. It returns a function that removes exactly what it installed.
The kinds live in their own modules; KINDS maps each name to its function. The sampler moves a
Clock through the steps (sampling.cfg_denoiser), and every window reads it.
"""
from __future__ import annotations

from . import attention, feature_resize, redilation, window_attention
from .variants import PROCEDURES, USUAL, changes

KINDS = {
    "attention": attention.install_rule,
    "redilate": redilation.install,
    "resize": feature_resize.install,
    "window": window_attention.install,
}


class Clock:
    """Which model evaluation of the sampler is running (0-based, of `steps`)."""

    def __init__(self, steps: int):
        self.steps, self.step = steps, 0


class Window:
    """A change's step window: active during the first `until` share of the steps."""

    def __init__(self, clock: Clock, until: float):
        self.clock, self.until = clock, until

    @property
    def active(self) -> bool:
        return self.clock.step < self.until * self.clock.steps

    @property
    def step(self) -> int:
        return self.clock.step


def install(unet, variants: dict, name: str, geometry: dict, width: int, height: int,
            clock: Clock, probe=None) -> None:
    """Install variant `name` for width x height images; `restore` removes it. A probe (which
    reads the attention weights, pipeline/probe.py) goes with the usual UNet or a rule."""
    restore(unet)
    undo = []
    unet._intervention_undo = undo
    if probe is not None:
        parts = changes(variants, name)
        if any(c["kind"] != "attention" for c in parts):
            raise ValueError(f"variant {name!r}: the probe measures attention rules only")
        rule = parts[0]["rule"] if parts else USUAL
        attention.install(unet, rule, geometry, width, height, probe)
        undo.append(lambda: attention.restore(unet))
        return
    for change in changes(variants, name):
        if change["kind"] in PROCEDURES:  # the sampler's business (sampling.sample)
            continue
        undo.append(KINDS[change["kind"]](unet, change, geometry, width, height,
                                          Window(clock, change["until"])))


def restore(unet) -> None:
    """Remove whatever variant is installed: the UNet is the model's own again."""
    for undo in reversed(getattr(unet, "_intervention_undo", [])):
        undo()
    unet._intervention_undo = []
    attention.restore(unet)
