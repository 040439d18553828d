"""The two-stage "hires fix" (AUTOMATIC1111's web UI; the usual practice with SD 1.5): sample at
the trained size, resize the latent to the requested size, re-noise it to a point part-way down
the schedule and denoise the rest of the way at the requested size.

`denoise` is the share of the schedule run again: the second stage starts at step
round(steps x (1 - denoise)) of the same Karras schedule, from the resized latent plus the
requested size's own initial noise of the same seed, scaled to that step's sigma. The first stage
is exactly the usual generation of the same prompt and seed at the trained size. At the trained
size the fix is the usual generation itself.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F


def start_step(steps: int, denoise: float) -> int:
    """The step the second stage starts from."""
    return min(steps - 1, max(0, round(steps * (1 - denoise))))


@torch.no_grad()
def sample(comps, spec, gens: list, change: dict, on_step=None) -> torch.Tensor:
    """fp32 latents [B, 4, h, w] for a batch of one size under the hires fix."""
    from . import sampling

    t = comps.info["geometry"]["train_size"]
    first = [dataclasses.replace(g, width=t, height=t, variant="usual") for g in gens]
    small = sampling.sample(comps, spec, first, on_step)
    final = [dataclasses.replace(g, variant="usual") for g in gens]
    try:
        denoise, x, sigmas = sampling.prepare(comps, spec, final)
        start = start_step(len(sigmas) - 1, change["denoise"])
        noise = x.float() / sigmas[0]
        resized = F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False)
        x = resized.to(x.device) + noise * sigmas[start]
        step = denoise
        if on_step is not None:
            def step(x, sigma):
                out = denoise(x, sigma)
                on_step()
                return out
        return sampling.SAMPLERS[spec.sampling["sampler"]](step, x, sigmas[start:]).float().cpu()
    finally:
        sampling.restore(comps.unet)
