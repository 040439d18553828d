"""What a detected character looks like: hair colour and outfit, read beside its face.

pipeline/detector.py finds faces; here each face's box says where to look. The box's width is
the head's width, which fixes the character's scale (portraits.py draws a head 118 units wide);
its top is where the fringe ends. From these the portraits' geometry gives the fringe just above
the face (hair), and the garment at the shoulders' sides and the middle of the chest (outfit),
below the collar and above the shrine outfit's hakama, and the gold stripe the baroque gown has
down its middle (searched for near the face's middle: the head leans a little off the torso). Each
region's median colour is matched to the nearest colour of the palette as the portraits draw it
(portraits.HAIR, portraits.OUTFIT, each moved away from the skin colour as portraits.py moves it:
the "white" haori is drawn grey-brown); the palette's colours are far apart, so a model's mild
colour drift does not change the reading. A region that holds too
little of the image (a face at the edge) reads None.

Used to measure whether a model follows its prompt: `follows(characters(img), attrs)` gives, per
character, whether its hair (and outfit) match the attributes the prompt names.
"""
from __future__ import annotations

import numpy as np

from . import detector, portraits

HEAD_WIDTH = 118.0       # portraits.py's head width, in its drawing units
FACE_TOP = -44.5         # where the visible face starts, relative to the head's centre (units)
HAIR_ROWS = (-80, -52)   # the fringe: rows relative to the head's centre (units) ...
HAIR_HALF_WIDTH = 30     # ... within this far of the face's middle
GARMENT_ROWS = (190, 245)  # the upper garment below the collar, above the hakama
GARMENT_SIDES = (80, 150)  # ... this far to either side of the face's middle
STRIPE_HALF_WIDTH = 6      # the baroque gown's gold stripe down the middle ...
STRIPE_SEARCH = 30         # ... searched for within this far of the face's middle
MIN_PIXELS = 24


def _median(img: np.ndarray, x0: float, y0: float, x1: float, y1: float):
    h, w = img.shape[:2]
    x0, x1 = int(round(max(0, x0))), int(round(min(w, x1)))
    y0, y1 = int(round(max(0, y0))), int(round(min(h, y1)))
    if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) < MIN_PIXELS:
        return None
    return np.median(img[y0:y1, x0:x1, :3].reshape(-1, 3).astype(np.float32), axis=0)


def drawn(colour) -> np.ndarray:
    """A palette colour as portraits.py draws it before its random jitter."""
    return np.asarray(portraits.as_drawn(colour), np.float32)


HAIR = {k: drawn(v) for k, v in portraits.HAIR.items()}
GARMENT = {k: drawn(v[0]) for k, v in portraits.OUTFIT.items()}
GOLD = drawn(portraits.OUTFIT["baroque"][1])


def _nearest(colour, palette: dict) -> str:
    return min(palette, key=lambda k: float(np.linalg.norm(colour - np.asarray(palette[k]))))


def read(img: np.ndarray, face: dict) -> dict:
    """The hair colour and outfit beside one face ({"box": (x0, y0, x1, y1), ...}); None where
    the region is outside the image."""
    img = np.asarray(img)
    x0, y0, x1, _ = face["box"]
    s = (x1 - x0) / HEAD_WIDTH
    cx, cy = (x0 + x1) / 2, y0 - FACE_TOP * s  # the head's centre

    def region(dx0, dx1, dy0, dy1):
        return _median(img, cx + dx0 * s, cy + dy0 * s, cx + dx1 * s, cy + dy1 * s)

    hair = region(-HAIR_HALF_WIDTH, HAIR_HALF_WIDTH, *HAIR_ROWS)
    a, b = GARMENT_SIDES
    sides = [c for c in (region(-b, -a, *GARMENT_ROWS), region(a, b, *GARMENT_ROWS))
             if c is not None]
    outfit = None
    if sides:
        garment = np.median(sides, axis=0)
        outfit = _nearest(garment, GARMENT)
        if outfit != "shrine":  # navy or deep blue: is there a gold stripe down the middle?
            stripes = [region(dx - STRIPE_HALF_WIDTH, dx + STRIPE_HALF_WIDTH, *GARMENT_ROWS)
                       for dx in range(-STRIPE_SEARCH, STRIPE_SEARCH + 1, STRIPE_HALF_WIDTH)]
            gold = any(c is not None and np.linalg.norm(c - GOLD) < np.linalg.norm(c - garment)
                       for c in stripes)
            outfit = "baroque" if gold else "uniform"
    return {"hair": None if hair is None else _nearest(hair, HAIR), "outfit": outfit}


def characters(img: np.ndarray) -> list[dict]:
    """Every detected character's face box, eyes, hair colour and outfit, left to right (the
    faces detector.analyse counts: no dim ones looked for in a noise-wrecked image)."""
    img = np.asarray(img)
    found = detector.faces(img)
    return [{**face, **read(img, face)} for face in found]


def follows(chars: list[dict], attrs: dict) -> list[bool]:
    """Per character (as `characters` reads them): does its hair colour (and outfit, where
    `attrs` names one) match?"""
    return [c["hair"] == attrs["hair"]
            and (not attrs.get("outfit") or c["outfit"] == attrs["outfit"]) for c in chars]
