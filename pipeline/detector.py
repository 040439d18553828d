"""A detector for the preview miniature's domain (pipeline/portraits.py): how many characters an
image holds, and how far its colours are from the training set's.

Characters are counted by their faces, and a face is found from its eyes rather than by a fixed
skin colour, so that a model which tints its faces (paler, greener, dimmer) is still counted. On a
grid of CELL-pixel cells (a cell is dark when most of its pixels have luma below DARK: a decode
at 768² can draw eyes at a luma of 92 to 96; NOISY_DARK in a noise-wrecked image), every
4-connected blob of dark cells of an eye's size and shape is a candidate eye. The skin around it
(a ring two to four cells out, past the eye's blurred rim) gives the face's colour, which must be
light (luma at least FACE_LUMA) and not vivid (saturation at most FACE_SATURATION). The face is
then the cells within FACE_DISTANCE of that colour connected to the ring; it is one when it covers
at least MIN_AREA of the image (and MIN_PIXELS), at most MAX_PIXELS and no further than REACH
cells from the eye (so not the sky or a wall), and encloses the eye and at least EYE_CELLS dark
cells in all (region cells on all four sides of them). Where the region at FACE_DISTANCE is too
large or reaches too far, the tighter tolerances of TOLERANCES are tried in turn: a decode blurs a
face into blonde hair or a neck of nearly its colour, and the face is the part that stays close.
Faces that share a cell are one head, and an eye already inside a found face starts no other;
of two faces one inside the other (hair or a neck of nearly the skin's colour grown around a
face, the face a hole in it), the inner one is the head. One head can still be two faces stacked
one above the other and run together through a mass of hair of the skin's colour: where its
eye blobs alike in size fall into an upper and a lower group further apart than STACK times the
spacing of an eye pair side by side, it is split between them into two faces (each with the
eyes of its part).
Where no face is found, the search is made again with skin as dim as DIM_FACE_LUMA (a decode at a
size the model was not trained for can dim a whole image, its one face with it); only then, since
beside a face of the usual lightness a dim one is a wall or a ghost, and never in a noise-wrecked
image, whose speckle makes dim faces of its own. A dim face's box spans at most MAX_SHARE of the
image: a dim field that wide is a wall (a face of the usual lightness may fill a small image, as
the model draws close-ups at 200²). The portraits' faces are rendered in one skin colour
(portraits.SKIN), which no other element comes within portraits.SKIN_MARGIN of.

Beside the faces found so, a decode at a size the model was not trained for draws a second
character as a ghost: its skin dimmer, its eyes only faintly darker than the skin around them
(0.8 to 0.9 times), and no darker than DARK. A cell is faintly dark where its luma is below FAINT
times its surroundings' (a grey closing over SURROUND cells, which fills in anything darker and
smaller than the window) and those are at least FAINT_SURROUND light. Where a face has been found
(and the image is not wrecked by noise), a faint blob outside it starts another face as above,
with skin at least FAINT_FACE_LUMA, a box at most MAX_SHARE of the image, grown around the faint
cells (their colour can be within FACE_DISTANCE of the skin) and holding a pair of eye-shaped
blobs side by side; alone, without a face of dark eyes beside it, no faint face is looked for.

A face's eyes are the eye-sized, eye-shaped blobs it encloses that are dark, or darker than
EYE_RATIO times the face's median luma (a decode draws a ghost's eyes fainter than the face's
own; the mouth's line is too long for an eye): every training portrait's face has two. A
face with more or fewer than EYES (a third eye, a ghost of a second face inside the first, a
one-eyed face: what a training-free fix can trade a duplicated body for) makes the image
`malformed`; so does a face with two eyes that encloses a ghost's pair besides them, clear of
its eyes: two eye-shaped blobs darker than GHOST times their surroundings, side by side and as
far apart as SPACING times its own eyes (a decode draws a ghost's features faintly above or
below a face's own; a single faint spot, shading, is not a pair). So does noise over the whole image (a fix that breaks the sampler's denoising leaves
it): where the mean luma step between neighbouring pixels exceeds NOISE the eyes drown in speckle,
and such an image is malformed whatever faces can still be found in it, unless two can. Each
image falls into one class: none (no face), one (one face with EYES eyes), malformed (one face
with another count, or a noise-wrecked image) or duplicated (two or more faces).

Colour statistics are the mean HSV saturation, the contrast (standard deviation of luma) and the
clipped share (pixels with a channel at 0..2 or 253..255); `colour_error` is the root mean square
of their z-scores against the training set's.
"""
from __future__ import annotations

import numpy as np

VERSION = 8  # bump when the rules below change: it is part of every evaluation's provenance
CELL = 4
DARK = 110           # luma (0..255) below which a cell counts as dark (an eye, black hair) ...
NOISY_DARK = 90      # ... or this, in an image wrecked by noise (its speckle is dark at DARK)
EYE_SIZE = (2, 80)   # an eye is a dark blob of this many cells ...
EYE_ASPECT = 3.0     # ... no more than this much taller than wide or wider than tall
FACE_LUMA = 150      # the skin around an eye is at least this light ...
DIM_FACE_LUMA = 100  # ... or this light, where no face that light is found
FACE_SATURATION = 0.43  # ... and at most this saturated (the portraits' skin: 0.23)
FACE_DISTANCE = 40.0 # RGB distance from that skin's colour within which a cell is face ...
TOLERANCES = (1.0, 0.75, 0.5)  # ... times these, tried in turn until the face fits its bounds
REACH = 64           # cells: a face reaches no further than this from its eye
MIN_AREA = 0.006     # a face covers at least this share of the image ...
MIN_PIXELS = 600     # ... and this many pixels ...
MAX_PIXELS = 40000   # ... and at most this many (the training portraits' faces: 9,700 to 16,500)
MAX_SHARE = 0.35     # a dim face's bounding box spans at most this share of the image
EYE_CELLS = 2        # dark cells a face encloses at least (eyes)
EYE_RATIO = 0.55     # an enclosed blob darker than this times the face's median luma is an eye
STACK = 2.0          # eye rows this many pair spacings apart are two faces stacked in one
EYES = 2             # eyes a well-formed face has; more or fewer make the image malformed
NOISE = 4.0          # mean |luma step| to the right and downward neighbour (0..255, summed) above
                     # which an image is wrecked by noise (model decodes: at most 2.8; wrecked: 5.5)
SURROUND = 7         # cells: the window of the grey closing that gives a cell's surroundings' luma
FAINT = 0.9          # a cell darker than this times its surroundings' luma is faintly dark ...
FAINT_SURROUND = 120 # ... where the surroundings are at least this light
FAINT_FACE_LUMA = 135  # a faint face's skin is at least this light
GHOST = 0.93         # a face's blobs darker than this times their surroundings: ghost features
SPACING = (0.5, 1.5) # a ghost's eye pair is spaced within these times the face's own eyes
CLASSES = ("none", "one", "malformed", "duplicated")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
STATS = ("saturation", "contrast", "clipped")


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


def _dilate(mask: np.ndarray) -> np.ndarray:
    """The mask and its 4-neighbours."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _grow(seed: np.ndarray, allowed: np.ndarray, most: float) -> np.ndarray | None:
    """The cells of `allowed` 4-connected to `seed`, or None when they are more than `most`."""
    region = seed & allowed
    while True:
        grown = _dilate(region) & allowed
        if grown.sum() > most:
            return None
        if np.array_equal(grown, region):
            return region
        region = grown


def _grid(values: np.ndarray) -> np.ndarray:
    """Mean of each CELL x CELL cell of an HxW(xC) array."""
    h, w = values.shape[:2]
    hc, wc = h // CELL, w // CELL
    return values[:hc * CELL, :wc * CELL].reshape(hc, CELL, wc, CELL, *values.shape[2:]).mean((1, 3))


def _eyes(dark: np.ndarray) -> list[tuple[float, float, int, int, int, int]]:
    """Candidate eyes: (centre row, centre column, y0, y1, x0, x1) of eye-shaped dark blobs."""
    out = []
    for ys, xs in _components(dark):
        if not _eye_shaped(ys, xs):
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        out.append((float(ys.mean()), float(xs.mean()), int(y0), int(y1), int(x0), int(x1)))
    return sorted(out, key=lambda e: e[1])


def _eye_shaped(ys: np.ndarray, xs: np.ndarray) -> bool:
    """Whether a blob of cells has an eye's size and shape (not a mouth's line, not hair)."""
    height, width = ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()
    return (EYE_SIZE[0] <= len(ys) <= EYE_SIZE[1]
            and max(height, width) <= EYE_ASPECT * min(height, width))


def _face(colour: np.ndarray, dark: np.ndarray, eye: tuple, least: float, most: float,
          lightest: float, widest: float, faint: bool = False):
    """The face around a candidate eye, as a boolean mask of the cell grid, or None when the
    blob is not an eye in a face (skin at least `lightest` in luma, its box at most `widest` of
    the image). With `faint` the face is grown around the dark cells, never over them: a faint
    eye's colour can lie within FACE_DISTANCE of its skin's."""
    hc, wc = dark.shape
    y0, y1 = max(eye[2] - REACH, 0), min(eye[3] + REACH, hc)
    x0, x1 = max(eye[4] - REACH, 0), min(eye[5] + REACH, wc)
    colour, dark = colour[y0:y1, x0:x1], dark[y0:y1, x0:x1]
    blob = np.zeros(dark.shape, dtype=bool)
    blob[eye[2] - y0:eye[3] - y0, eye[4] - x0:eye[5] - x0] = True
    blob &= dark
    near = _dilate(_dilate(blob))
    ring = _dilate(_dilate(near)) & ~near & ~dark  # the skin around the eye, past its blurred rim
    if not ring.any():
        return None
    skin = np.median(colour[ring], axis=0)
    if skin @ LUMA < lightest or skin.max() - skin.min() > FACE_SATURATION * skin.max():
        return None  # too dark or too vivid for skin
    distance = np.linalg.norm(colour - skin, axis=-1)
    for tolerance in TOLERANCES:  # looser first; tighter where the skin runs on into hair or neck
        allowed = distance < tolerance * FACE_DISTANCE
        region = _grow(ring, allowed & ~dark if faint else allowed, most)
        if region is not None and not (
                (y0 > 0 and region[0].any()) or (y1 < hc and region[-1].any())
                or (x0 > 0 and region[:, 0].any()) or (x1 < wc and region[:, -1].any())):
            break  # no larger than a face, and no further from the eye than a face reaches
    else:
        return None  # larger than a face (sky, a wall) at every tolerance
    if region.sum() < least:
        return None
    ys, xs = np.nonzero(region)
    if (np.ptp(ys) + 1) * (np.ptp(xs) + 1) > widest * hc * wc:
        return None  # spans too much of the image for a face
    holes = _enclosed(region) & dark
    if holes.sum() < EYE_CELLS or not (holes & blob).any():
        return None
    full = np.zeros((hc, wc), dtype=bool)
    full[y0:y1, x0:x1] = region
    return full


def _regions(colour: np.ndarray, dark: np.ndarray, least: float, lightest: float,
             widest: float) -> list:
    """The face regions (boolean masks of the cell grid) with skin at least `lightest` in luma
    and a box at most `widest` of the image."""
    found: list[np.ndarray] = []
    for eye in _eyes(dark):
        if any(f[int(eye[0]), int(eye[1])] or _enclosed(f)[int(eye[0]), int(eye[1])]
               for f in found):
            continue  # the other eye of a face already found
        region = _face(colour, dark, eye, least, MAX_PIXELS / CELL ** 2, lightest, widest)
        if region is None:
            continue
        inside = _enclosed(region)
        for k, other in enumerate(found):
            if (other & region).any():
                found[k] = other | region  # one head (or two stacked: see _stacked)
                break
            holds = (inside & other).any()
            if holds or (_enclosed(other) & region).any():
                found[k] = other if holds else region
                break  # hair or a neck of the skin's colour around a face: the face is the head
        else:
            found.append(region)
    return found


def faces(img: np.ndarray, clean: bool | None = None) -> list[dict]:
    """The faces in a uint8 HxWx3 image: each its bounding box (x0, y0, x1, y1, in pixels) and
    how many eyes (eye-sized dark blobs) it encloses, left to right. With `clean` (by default,
    None: where the image is not wrecked by noise) a cell is dark below DARK, not NOISY_DARK;
    where no face has skin of FACE_LUMA, faces with skin of DIM_FACE_LUMA are looked for; beside
    the faces found, faint ones (_faint_faces); and a ghost's eyes in a face (_ghost). In a
    wrecked image none of these is looked for: its speckle makes such faces and eyes of its own."""
    if clean is None:
        clean = noise(img) <= NOISE
    h, w = img.shape[:2]
    rgb = img[..., :3].astype(np.float32)
    colour = _grid(rgb)
    dark = _grid((rgb @ LUMA < (DARK if clean else NOISY_DARK)).astype(np.float32)) > 0.5
    least = max(MIN_AREA * h * w, MIN_PIXELS) / CELL ** 2
    found = _regions(colour, dark, least, FACE_LUMA, 1.0)
    if not found and clean:
        found = _regions(colour, dark, least, DIM_FACE_LUMA, MAX_SHARE)
    luma = colour @ LUMA
    ghosts = []
    if found and clean:  # the only place the surroundings are read: skip them elsewhere
        around = _surroundings(luma)
        faint = (luma < FAINT * around) & (around >= FAINT_SURROUND)
        ghosts = _faint_faces(colour, dark, faint, least, found)
    out = []
    for region, is_faint in [(f, False) for f in found] + [(g, True) for g in ghosts]:
        eyeish = dark | (luma < EYE_RATIO * np.median(luma[region]))
        if is_faint:
            eyeish |= faint  # a faint face's eyes are its faint blobs
        inside = _enclosed(region)
        eyes = [(ys.mean(), xs.mean(), len(ys)) for ys, xs
                in _components(inside & eyeish) if _eye_shaped(ys, xs)]
        ghost = clean and len(eyes) == EYES and _ghost(inside, eyeish, luma < GHOST * around, eyes)
        cut = _stacked(eyes)
        parts = [region] if cut is None else [_rows(region, 0, cut), _rows(region, cut, None)]
        for part in parts:
            ys, xs = np.nonzero(part)
            box = (int(xs.min() * CELL), int(ys.min() * CELL), int((xs.max() + 1) * CELL),
                   int((ys.max() + 1) * CELL))
            mine = sum(ys.min() <= y <= ys.max() for y, _, _ in eyes) + (2 if ghost else 0)
            out.append({"box": box, "eyes": int(mine)})
    return sorted(out, key=lambda f: f["box"])


def _surroundings(luma: np.ndarray) -> np.ndarray:
    """Each cell's surroundings' luma: a grey closing of the grid (its maximum, then the minimum
    of that, over SURROUND x SURROUND cells), which fills in what is darker than its
    surroundings and smaller than the window: eyes, however faint."""
    from numpy.lib.stride_tricks import sliding_window_view

    def over(a: np.ndarray, reduce) -> np.ndarray:
        padded = np.pad(a, SURROUND // 2, mode="edge")
        return reduce(sliding_window_view(padded, (SURROUND, SURROUND)), axis=(-2, -1))

    return over(over(luma, np.max), np.min)


def _blobs(mask: np.ndarray) -> list[tuple[float, float]]:
    """(row, column) of each eye-shaped blob of a boolean grid."""
    return [(ys.mean(), xs.mean()) for ys, xs in _components(mask) if _eye_shaped(ys, xs)]


def _side_by_side(blobs: list[tuple[float, float]]) -> list[float]:
    """How far apart across each pair of blobs side by side is (twice as far across as up or
    down)."""
    return [abs(x1 - x2) for i, (y1, x1) in enumerate(blobs) for y2, x2 in blobs[i + 1:]
            if abs(x1 - x2) >= 2 * abs(y1 - y2)]


def _faint_faces(colour: np.ndarray, dark: np.ndarray, faint: np.ndarray, least: float,
                 found: list) -> list:
    """Faces beside those `found` whose eyes are only faintly dark (`faint` cells: a ghost of a
    second character, as a decode draws one at a size the model was not trained for), each grown
    from a faint blob with skin at least FAINT_FACE_LUMA, its box at most MAX_SHARE of the image
    and a pair of eye-shaped blobs side by side in it. One that shares a cell with a face, encloses
    one or lies in one is not another."""
    either = dark | faint
    known = [(f, _enclosed(f)) for f in found]  # (face, the cells it encloses)
    new = []
    for eye in _eyes(faint & ~dark):
        at = int(eye[0]), int(eye[1])
        if any(f[at] or held[at] for f, held in known):
            continue
        region = _face(colour, either, eye, least, MAX_PIXELS / CELL ** 2, FAINT_FACE_LUMA,
                       MAX_SHARE, faint=True)
        if region is None:
            continue
        inside = _enclosed(region)
        if _side_by_side(_blobs(inside & either)) and not any(
                (region & f).any() or (inside & f).any() or (held & region).any()
                for f, held in known):
            known.append((region, inside))
            new.append(region)
    return new


def _ghost(inside: np.ndarray, eyes_mask: np.ndarray, faint: np.ndarray, eyes: list) -> bool:
    """Whether a face (`inside`: the cells it encloses) with its two `eyes` holds a ghost's pair
    besides them: two eye-shaped blobs of `faint` cells it encloses, clear of its eyes
    (`eyes_mask` and the cells next to it), side by side and as far apart as SPACING times its
    own eyes are."""
    blobs = _blobs(inside & faint & ~_dilate(inside & eyes_mask))
    spacing = abs(eyes[0][1] - eyes[1][1])
    return any(SPACING[0] * spacing <= dx <= SPACING[1] * spacing for dx in _side_by_side(blobs))


def _stacked(eyes: list[tuple[float, float, int]]) -> float | None:
    """Where one face region holds two faces stacked one above the other (each with its own
    eyes, run together through a mass of hair of the skin's colour): the row between them, or
    None. `eyes`: (row, column, cells) of each eye blob. Of the blobs alike in size (within a
    factor of two of their median: not a collar's dark band, not a hairline's dashes), three or
    more split at the widest vertical gap between their rows when it is at least STACK times the
    spacing of an eye pair side by side (twice as far apart across as up or down) in either
    part."""
    middle = np.median([n for _, _, n in eyes]) if eyes else 0
    alike = [(y, x) for y, x, n in eyes if middle / 2 <= n <= 2 * middle]
    if len(alike) < 3:
        return None
    rows = sorted(y for y, _ in alike)
    gap, k = max((b - a, k) for k, (a, b) in enumerate(zip(rows, rows[1:])))
    cut = rows[k] + gap / 2
    pairs = (_side_by_side([e for e in alike if e[0] < cut])
             + _side_by_side([e for e in alike if e[0] >= cut]))
    return cut if pairs and gap >= STACK * min(pairs) else None


def _rows(region: np.ndarray, start: float, stop: float | None) -> np.ndarray:
    """The part of a region whose rows lie in [start, stop)."""
    rows = np.arange(region.shape[0])[:, None]
    return region & (rows >= start) & (rows < (np.inf if stop is None else stop))


def heads(img: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x0, y0, x1, y1, in pixels) of the heads in a uint8 HxWx3 image."""
    return [f["box"] for f in faces(img)]


def count_characters(img: np.ndarray) -> int:
    """How many characters (heads with eyes) a uint8 HxWx3 image holds."""
    return len(heads(np.asarray(img)))


def noise(img: np.ndarray) -> float:
    """Mean absolute luma step between neighbouring pixels, rightward plus downward (0..510)."""
    luma = img[..., :3].astype(np.float32) @ LUMA
    return float(np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean())


def classify(found: list[dict], noisy: bool = False) -> str:
    """The image's class (CLASSES) from its faces and whether it is wrecked by noise."""
    if len(found) > 1:
        return "duplicated"
    if noisy:
        return "malformed"
    if not found:
        return "none"
    return "one" if found[0]["eyes"] == EYES else "malformed"


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
    rough = noise(arr)
    found = faces(arr, clean=rough <= NOISE)  # the noise measured once, for the record too
    out = {"characters": len(found), "eyes": [f["eyes"] for f in found],
           "class": classify(found, rough > NOISE), "noise": rough, **stats}
    if ref is not None:
        out["colour_error"] = colour_error(stats, ref)
    return out
