"""Windowed self-attention at the trained token count.

Each self-attention layer whose feature map is larger than at the trained size splits it into
ceil(size / trained size) windows per axis and lets each query attend only within its window, so
no query has more keys than in training; the weights are the layer's own. The windows shift by
half a window on every other step, so that no seam stays in one place (as in HiDiffusion's
MSW-MSA, Zhang et al., ECCV 2024, and Swin). Comparing it with the usual attention separates "too
many keys" from everything else; a layer no larger than in training keeps its own processor.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .attention import restore, self_attention, set_self_attention
from .geometry import level_sizes


def windows(h: int, w: int, th: int, tw: int) -> tuple[int, int]:
    """Windows per axis for an h x w map whose trained size was th x tw."""
    return math.ceil(h / th), math.ceil(w / tw)


def attend_windowed(q, k, v, grid: tuple[int, int], count: tuple[int, int], shift: bool,
                    scale: float) -> torch.Tensor:
    """Attention of [B, heads, h*w, d] tensors within count windows per axis, the grid rolled
    by half a window first when `shift`."""
    b, heads, n, d = q.shape
    h, w = grid
    sizes = [math.ceil(h / count[0]), math.ceil(w / count[1])]
    roll = (sizes[0] // 2, sizes[1] // 2) if shift else (0, 0)
    maps = [t.reshape(b, heads, h, w, d).roll((-roll[0], -roll[1]), (2, 3)) for t in (q, k, v)]
    out = torch.empty_like(maps[0])
    for rows in torch.arange(h).tensor_split(count[0]):
        for cols in torch.arange(w).tensor_split(count[1]):
            r, c = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
            qw, kw, vw = (m[:, :, r, c].reshape(b, heads, -1, d) for m in maps)
            out[:, :, r, c] = F.scaled_dot_product_attention(qw, kw, vw, scale=scale).reshape(
                b, heads, len(rows), len(cols), d)
    return out.roll(roll, (2, 3)).reshape(b, heads, n, d)


class WindowProcessor:
    """One self-attention layer, windowed inside the step window; its own processor otherwise
    and whenever its map is no larger than the trained one."""

    def __init__(self, name: str, own, grids: dict, trained: tuple[int, int], window):
        self.name, self.own, self.grids, self.trained, self.window = name, own, grids, trained, window

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):
        n = hidden_states.shape[1] if hidden_states.ndim == 3 else math.prod(hidden_states.shape[2:])
        grid = self.grids.get(n)
        count = windows(*grid, *self.trained) if grid else (1, 1)
        if not self.window.active or count == (1, 1):
            return self.own(attn, hidden_states, encoder_hidden_states, attention_mask, temb,
                            *args, **kwargs)
        shift = self.window.step % 2 == 1
        return self_attention(attn, hidden_states, encoder_hidden_states, attention_mask,
                              self.name, lambda q, k, v: attend_windowed(q, k, v, grid, count,
                                                                         shift, attn.scale))


def install(unet, change: dict, geometry: dict, width: int, height: int, window):
    sizes = level_sizes(geometry, width, height)
    t = geometry["train_size"]
    trained = level_sizes(geometry, t, t)

    def make(name, level, own):
        w, h = sizes[level]
        return WindowProcessor(name, own, {w * h: (h, w)}, (trained[level][1], trained[level][0]),
                               window)

    set_self_attention(unet, make)
    return lambda: restore(unet)
