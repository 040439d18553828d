"""Resizing the deep features to their trained size: the training-free "deeper UNet".

Deep Shrink (kohya-ss, 2023) and HiDiffusion's RAU-Net (Zhang et al., ECCV 2024) make a larger
image's deep features as large as at the trained size during the first steps: after one down block
the features are resized (here: bicubic) to the trained size of the level below it, the deeper
levels run at their trained sizes, and the up block that comes back to this level resizes its
output to the skip connections' size (nearest, as its upsampler does). The same change enlarges a
smaller image's deep features to their trained size: the mirror for small images. The skip
connections of the resized block's own level stay at the image's size. Outside the step window,
and at the trained size, nothing changes.
"""
from __future__ import annotations

import torch.nn.functional as F

from .geometry import level_sizes


def install(unet, change: dict, geometry: dict, width: int, height: int, window):
    level = change["level"]
    sizes = level_sizes(geometry, width, height)
    t = geometry["train_size"]
    target = level_sizes(geometry, t, t)[level + 1]  # (w, h) the deeper level had in training
    if sizes[level + 1] == target:
        return lambda: None
    back = (sizes[level][1], sizes[level][0])  # (h, w) of this level's skip connections

    def after_down(module, args, kwargs, output):
        if not window.active:
            return None
        hidden, skips = output
        resized = F.interpolate(hidden, size=(target[1], target[0]), mode="bicubic",
                                align_corners=False).to(hidden.dtype)
        return resized, (*skips[:-1], resized)  # the last skip is the downsampled output

    def before_up(module, args, kwargs):
        if not window.active:
            return None
        return args, {**kwargs, "upsample_size": back}

    levels = len(unet.down_blocks)
    handles = [unet.down_blocks[level].register_forward_hook(after_down, with_kwargs=True),
               unet.up_blocks[levels - 2 - level].register_forward_pre_hook(before_up,
                                                                            with_kwargs=True)]
    return lambda: [h.remove() for h in handles]
