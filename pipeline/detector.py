"""A detector for the preview miniature's domain (pipeline/portraits.py): how many characters an
image holds, and how far its colours are from the training set's.

Characters are counted by their heads: the pixels within SKIN_DISTANCE of the portraits' skin
colour are grouped into 4-connected regions on a grid of CELL-pixel cells (a cell counts when
most of its pixels are skin), and every region of at least MIN_AREA of the image (and MIN_PIXELS)
that encloses dark cells (the eyes) is one head with its neck. Colour statistics are the mean HSV saturation, the contrast (standard
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
DARK = 90          # luma (0..255) below which a cell inside a head counts as an eye
EYE_CELLS = 2
STATS = ("saturation", "contrast", "clipped")


def skin_mask(img: np.ndarray) -> np.ndarray:
    """Boolean HxW: pixels of skin colour."""
    return np.linalg.norm(img[..., :3].astype(np.float32) - SKIN, axis=-1) < SKIN_DISTANCE


def _components(grid: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 4-connected regions of a boolean grid, each as (rows, columns) of its cells."""
    seen = np.zeros_like(grid, dtype=bool)
    h, w = grid.shape
    regions = []
    for y, x in zip(*np.nonzero(grid)):
        if seen[y, x]:
            continue
        stack, cells = [(y, x)], []
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            cells.append((cy, cx))
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < h and 0 <= nx < w and grid[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        ys, xs = np.array(cells).T
        regions.append((ys, xs))
    return regions


def _enclosed(region: np.ndarray) -> np.ndarray:
    """Cells not in `region` with region cells on all four sides (holes: eyes, mouth)."""
    def before(a, axis):  # is there a region cell before this one along the axis?
        return np.maximum.accumulate(a, axis=axis)

    r = region.astype(np.int8)
    left, up = before(r, 1), before(r, 0)
    right, down = before(r[:, ::-1], 1)[:, ::-1], before(r[::-1], 0)[::-1]
    return (left & right & up & down).astype(bool) & ~region


def _cells(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    hc, wc = h // CELL, w // CELL
    return mask[:hc * CELL, :wc * CELL].reshape(hc, CELL, wc, CELL).mean((1, 3)) > 0.5


def heads(img: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x0, y0, x1, y1, in pixels) of the heads in a uint8 HxWx3 image: regions
    of skin-coloured cells at least MIN_AREA of the image (and MIN_PIXELS) large that enclose
    at least EYE_CELLS dark cells (eyes), which a sun disc or a pale window does not."""
    h, w = img.shape[:2]
    skin = _cells(skin_mask(img))
    luma = img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    dark = _cells(luma < DARK)
    least = max(MIN_AREA * h * w, MIN_PIXELS) / CELL ** 2
    found = []
    for ys, xs in _components(skin):
        if len(ys) < least:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        region = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        region[ys - y0, xs - x0] = True
        if (_enclosed(region) & dark[y0:y1, x0:x1]).sum() >= EYE_CELLS:
            found.append((int(x0 * CELL), int(y0 * CELL), int(x1 * CELL), int(y1 * CELL)))
    return found


def count_characters(img: np.ndarray) -> int:
    """How many characters (heads with eyes) a uint8 HxWx3 image holds."""
    return len(heads(np.asarray(img)))


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
