"""A detector for the preview miniature's domain (pipeline/portraits.py): how many characters an
image holds, and how far its colours are from the training set's.

Characters are counted by their heads: the pixels within SKIN_DISTANCE of the portraits' skin
colour are grouped into 4-connected regions on a grid of CELL-pixel cells (a cell counts when
most of its pixels are skin), and every region of at least MIN_AREA of the image (and MIN_PIXELS)
is one head with its neck. Colour statistics are the mean HSV saturation, the contrast (standard
deviation of luma) and the clipped share (pixels with a channel at 0..2 or 253..255);
`colour_error` is the root mean square of their z-scores against the training set's.
"""
from __future__ import annotations

import numpy as np

VERSION = 1  # bump when the rules below change: it is part of every evaluation's provenance
SKIN = np.array([246, 214, 190], dtype=np.float32)
SKIN_DISTANCE = 40.0
CELL = 4
MIN_AREA = 0.006
MIN_PIXELS = 600
STATS = ("saturation", "contrast", "clipped")


def skin_mask(img: np.ndarray) -> np.ndarray:
    """Boolean HxW: pixels of skin colour."""
    return np.linalg.norm(img[..., :3].astype(np.float32) - SKIN, axis=-1) < SKIN_DISTANCE


def _components(grid: np.ndarray) -> list[int]:
    """Sizes (in cells) of the 4-connected regions of a boolean grid."""
    seen = np.zeros_like(grid, dtype=bool)
    h, w = grid.shape
    sizes = []
    for y, x in zip(*np.nonzero(grid)):
        if seen[y, x]:
            continue
        stack, n = [(y, x)], 0
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            n += 1
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < h and 0 <= nx < w and grid[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        sizes.append(n)
    return sizes


def count_characters(img: np.ndarray) -> int:
    """How many characters (heads) a uint8 HxWx3 image holds."""
    mask = skin_mask(img)
    h, w = mask.shape
    hc, wc = h // CELL, w // CELL
    cells = mask[:hc * CELL, :wc * CELL].reshape(hc, CELL, wc, CELL).mean((1, 3)) > 0.5
    least = max(MIN_AREA * h * w, MIN_PIXELS) / CELL ** 2
    return sum(1 for n in _components(cells) if n >= least)


def colour_stats(img: np.ndarray) -> dict:
    """Mean saturation (0..1), contrast (luma std, 0..1) and clipped share of a uint8 image."""
    x = img[..., :3].astype(np.float32) / 255
    hi, lo = x.max(-1), x.min(-1)
    saturation = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-6), 0)
    luma = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    clipped = ((img[..., :3] <= 2) | (img[..., :3] >= 253)).any(-1)
    return {"saturation": float(saturation.mean()), "contrast": float(luma.std()),
            "clipped": float(clipped.mean())}


def reference(images) -> dict:
    """The training set's colour statistics: mean and standard deviation of each."""
    rows = [colour_stats(np.asarray(im)) for im in images]
    return {k: {"mean": float(np.mean([r[k] for r in rows])),
                "std": float(np.std([r[k] for r in rows]) + 1e-6)} for k in STATS}


def colour_error(stats: dict, ref: dict) -> float:
    """Root mean square z-score of an image's colour statistics against the reference."""
    z = [(stats[k] - ref[k]["mean"]) / ref[k]["std"] for k in STATS]
    return float(np.sqrt(np.mean(np.square(z))))


def analyse(img, ref: dict | None = None) -> dict:
    """Everything the detector says about one image."""
    arr = np.asarray(img)
    stats = colour_stats(arr)
    out = {"characters": count_characters(arr), **stats}
    if ref is not None:
        out["colour_error"] = colour_error(stats, ref)
    return out
