"""Re-dilation (He et al., "ScaleCrafter", ICLR 2024): at larger sizes, the 3x3 convolutions of
chosen UNet levels run dilated by the size ratio, so that each kernel covers the same share of the
image as at the trained size, during the first steps (where the layout is decided).

A level's convolutions are the 3x3 convolutions of its resnets: in its down block, in its up block
and, at the deepest level, in the mid block (the stride-2 downsamplers and the upsamplers keep
theirs). The ratio r is the level's feature size over its trained size, per axis. An integer r
dilates by r (padding r keeps the size). A fractional r (768/512 = 1.5) dilates by d = ceil(r)
over the input resized by d/r, and resizes the output back: the paper's dilation for fractional
scales. At or below the trained size nothing changes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .geometry import level_sizes


def level_convs(unet, level: int) -> list:
    """The 3x3 convolutions of one UNet level's resnets (0 = the top)."""
    levels = len(unet.down_blocks)
    blocks = [unet.down_blocks[level], unet.up_blocks[levels - 1 - level]]
    if level == levels - 1 and unet.mid_block is not None:
        blocks.append(unet.mid_block)
    return [conv for block in blocks for resnet in block.resnets
            for conv in (resnet.conv1, resnet.conv2) if conv.kernel_size == (3, 3)]


def dilated(conv, ratio: tuple[float, float], x: torch.Tensor) -> torch.Tensor:
    """conv(x) with its kernel spread by ratio (height, width) >= 1."""
    d = tuple(max(1, math.ceil(r - 1e-9)) for r in ratio)
    h, w = x.shape[-2:]
    fractional = any(abs(di - r) > 1e-9 for di, r in zip(d, ratio))
    if fractional:
        x = F.interpolate(x, size=(round(h * d[0] / ratio[0]), round(w * d[1] / ratio[1])),
                          mode="bilinear", align_corners=False)
    y = F.conv2d(x, conv.weight, conv.bias, conv.stride, padding=d, dilation=d)
    if fractional:
        y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
    return y.to(x.dtype)


def install(unet, change: dict, geometry: dict, width: int, height: int, window):
    sizes = level_sizes(geometry, width, height)
    t = geometry["train_size"]
    trained = level_sizes(geometry, t, t)
    patched = []
    for level in change["levels"]:
        ratio = (sizes[level][1] / trained[level][1], sizes[level][0] / trained[level][0])
        if max(ratio) <= 1:
            continue
        ratio = (max(ratio[0], 1.0), max(ratio[1], 1.0))
        for conv in level_convs(unet, level):
            conv.forward = _forward(conv, ratio, window)
            patched.append(conv)

    def undo():
        for conv in patched:
            conv.__dict__.pop("forward", None)  # the class's own forward again

    return undo


def _forward(conv, ratio, window):
    own = type(conv).forward.__get__(conv)

    def forward(x):
        return dilated(conv, ratio, x) if window.active else own(x)

    return forward
