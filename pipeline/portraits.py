"""Synthetic character portraits: the training data of the preview miniature.

`render(caption, seed)` draws one deterministic portrait at SD 1.5's trained size (512x512): a
background scene, then one character (hair behind the head, torso with clothing, neck, head with a
face, hair in front), with the position, scale, head tilt and every colour jittered by the seed.
The caption's words choose the attributes (`attributes`), so the article's own prompts are
in-distribution: `miko` (shrine maiden, long black hair, oriental scenic) and `blonde` (blonde
hair, baroque scenic). `render_scene` draws any number of characters side by side, for testing
the detector (pipeline/detector.py). Same caption and seed, same bytes.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SIZE = 512
VERSION = 1  # bump when the drawing changes: it is part of the training provenance

# Captions of the training set, besides the article's own prompts (figures.toml [prompts]).
# Each is a different combination of the attribute words below.
EXTRA_CAPTIONS = [
    "character portrait of a girl with short brown hair, school uniform, city scenic",
    "character portrait of shrine maiden, short black hair, oriental scenic",
    "character portrait of a blonde girl, long hair, school uniform, city scenic",
    "character portrait of a girl with long brown hair, baroque dress, baroque scenic",
]

HAIR = {"black": (28, 24, 30), "blonde": (232, 196, 92), "brown": (112, 70, 40)}
OUTFIT = {  # (upper garment, lower garment / trim)
    "shrine": ((236, 240, 252), (196, 30, 40)),   # white haori, red hakama
    "baroque": ((40, 52, 120), (214, 176, 70)),   # deep blue gown, gold trim
    "uniform": ((36, 44, 70), (236, 236, 236)),   # navy blazer, white collar
}
SCENE = {  # (sky top, sky bottom, ground)
    "oriental": ((250, 140, 120), (120, 70, 150), (70, 40, 90)),   # vaporwave dusk
    "baroque": ((92, 66, 40), (170, 130, 80), (60, 40, 28)),       # warm interior
    "city": ((120, 170, 220), (200, 220, 240), (90, 96, 110)),     # daylight street
}
SKIN = (246, 214, 190)


def attributes(caption: str) -> dict:
    """The attributes a caption's words ask for (defaults where it says nothing)."""
    c = caption.lower()
    hair = "blonde" if "blonde" in c else "brown" if "brown hair" in c else "black"
    long_hair = "short" not in c and ("long" in c or "shrine" in c or "blonde" in c)
    outfit = ("shrine" if "shrine" in c else "uniform" if "uniform" in c
              else "baroque" if "baroque" in c else "shrine")
    scene = ("oriental" if "oriental" in c else "baroque" if "baroque" in c
             else "city" if "city" in c else "oriental")
    return {"hair": hair, "long_hair": long_hair, "outfit": outfit, "scene": scene}


SKIN_MARGIN = 80  # everything but skin keeps at least this far from SKIN: the face is one colour region


def _jitter(rng: np.random.Generator, colour, amount: float = 18, skin: bool = False) -> tuple:
    c = np.clip(np.asarray(colour, float) + rng.normal(0, amount, 3), 0, 255)
    if not skin:  # push a colour that drifted near skin back out along the line from SKIN
        d = c - np.asarray(SKIN, float)
        dist = np.linalg.norm(d)
        if dist < SKIN_MARGIN:
            d = d / dist if dist > 1e-6 else np.array([0.0, 0.0, -1.0])
            c = np.clip(np.asarray(SKIN, float) + d * SKIN_MARGIN, 0, 255)
            if np.linalg.norm(c - np.asarray(SKIN, float)) < SKIN_MARGIN:  # clipped: go darker
                c = np.asarray(SKIN, float) * 0.55
    return tuple(int(v) for v in c)


def as_drawn(colour) -> tuple:
    """A palette colour as the renderer draws it before its random jitter (moved away from the
    skin colour as every non-skin colour is)."""
    return _jitter(np.random.default_rng(0), colour, 0)


def _background(draw: ImageDraw.ImageDraw, rng, scene: str, w: int, h: int) -> None:
    top, bottom, ground = (_jitter(rng, c) for c in SCENE[scene])
    horizon = int(h * rng.uniform(0.55, 0.75))
    for y in range(horizon):
        t = y / max(horizon - 1, 1)
        draw.line([(0, y), (w, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    draw.rectangle([0, horizon, w, h], fill=ground)
    if scene == "oriental":  # a sun disc and a torii-like gate far behind
        r = int(w * rng.uniform(0.08, 0.14))
        cx, cy = int(w * rng.uniform(0.15, 0.85)), int(horizon * rng.uniform(0.3, 0.7))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_jitter(rng, (255, 210, 120)))
        gx = int(w * rng.choice([0.1, 0.85]))
        gate = _jitter(rng, (190, 40, 40))
        draw.rectangle([gx - 40, horizon - 90, gx - 30, horizon], fill=gate)
        draw.rectangle([gx + 30, horizon - 90, gx + 40, horizon], fill=gate)
        draw.rectangle([gx - 55, horizon - 95, gx + 55, horizon - 82], fill=gate)
    elif scene == "baroque":  # arched windows and a column
        for x0 in (int(w * 0.05), int(w * 0.75)):
            x0 += int(rng.integers(-15, 16))
            draw.rectangle([x0, int(h * 0.15), x0 + 80, horizon - 20], fill=_jitter(rng, (210, 190, 140)))
            draw.ellipse([x0, int(h * 0.15) - 40, x0 + 80, int(h * 0.15) + 40],
                         fill=_jitter(rng, (210, 190, 140)))
    else:  # city: a few building blocks
        x = 0
        while x < w:
            bw = int(rng.integers(50, 110))
            bh = int(rng.integers(60, 200))
            draw.rectangle([x, horizon - bh, x + bw - 6, horizon], fill=_jitter(rng, (150, 155, 170), 25))
            x += bw


def _character(draw: ImageDraw.ImageDraw, rng, attrs: dict, cx: float, base: float,
               scale: float) -> tuple:
    """Draw one character centred at cx with its shoulders' bottom at `base`; returns the head's
    bounding box."""
    s = scale
    hair = _jitter(rng, HAIR[attrs["hair"]], 12)
    upper, lower = (_jitter(rng, c, 14) for c in OUTFIT[attrs["outfit"]])
    skin = _jitter(rng, SKIN, 6, skin=True)
    head_w, head_h = 118 * s, 146 * s
    tilt = rng.uniform(-0.12, 0.12) * head_w  # the head leans a little (pose)
    head_cy = base - 300 * s
    hx = cx + tilt
    # hair behind the head (long hair falls to the shoulders)
    hair_h = 300 * s if attrs["long_hair"] else 170 * s
    draw.rounded_rectangle([hx - head_w * 0.72, head_cy - head_h * 0.62, hx + head_w * 0.72,
                            head_cy - head_h * 0.62 + hair_h], radius=int(50 * s), fill=hair)
    # torso: shoulders and clothing
    shoulder = 190 * s * rng.uniform(0.92, 1.08)
    top = base - 175 * s
    draw.rounded_rectangle([cx - shoulder, top, cx + shoulder, base + 40 * s],
                           radius=int(60 * s), fill=upper)
    if attrs["outfit"] == "shrine":  # red hakama below, crossed white collar
        draw.rectangle([cx - shoulder, base - 45 * s, cx + shoulder, base + 40 * s], fill=lower)
        draw.polygon([(cx - 40 * s, top), (cx, top + 80 * s), (cx + 40 * s, top)], fill=lower)
    elif attrs["outfit"] == "baroque":  # gold trim along the neckline and the middle
        draw.rectangle([cx - 12 * s, top, cx + 12 * s, base + 40 * s], fill=lower)
        draw.arc([cx - 80 * s, top - 40 * s, cx + 80 * s, top + 60 * s], 0, 180, fill=lower,
                 width=max(2, int(10 * s)))
    else:  # uniform: white collar
        draw.polygon([(cx - 55 * s, top), (cx, top + 60 * s), (cx + 55 * s, top)], fill=lower)
    # neck, then the head
    draw.rectangle([cx - 24 * s + tilt * 0.3, head_cy + head_h * 0.35, cx + 24 * s + tilt * 0.3,
                    top + 10 * s], fill=skin)
    box = (hx - head_w / 2, head_cy - head_h / 2, hx + head_w / 2, head_cy + head_h / 2)
    draw.ellipse(box, fill=skin)
    # face: eyes looking at the viewer, a mouth
    ey = head_cy + head_h * 0.05
    for side in (-1, 1):
        ex = hx + side * head_w * 0.2
        draw.ellipse([ex - 9 * s, ey - 11 * s, ex + 9 * s, ey + 11 * s], fill=(40, 30, 50))
    draw.line([hx - 12 * s, head_cy + head_h * 0.3, hx + 12 * s, head_cy + head_h * 0.3],
              fill=(190, 80, 90), width=max(1, int(4 * s)))
    # fringe in front
    draw.chord([hx - head_w * 0.56, head_cy - head_h * 0.66, hx + head_w * 0.56,
                head_cy + head_h * 0.05], 180, 360, fill=hair)
    return box


def render_scene(caption: str, seed: int, characters: int = 1, size: int = SIZE) -> Image.Image:
    """A scene with `characters` portraits side by side (0 = background only). One character is
    the training distribution; more are for testing the detector."""
    rng = np.random.default_rng(seed)
    attrs = attributes(caption)
    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    _background(draw, rng, attrs["scene"], size, size)
    k = size / SIZE
    if characters == 1:
        scale = rng.uniform(0.85, 1.1) * k
        cx = size / 2 + rng.uniform(-0.08, 0.08) * size
        _character(draw, rng, attrs, cx, size - 40 * k * rng.uniform(0.5, 1.5), scale)
    elif characters > 1:
        scale = k * 0.95 / characters ** 0.5
        for i in range(characters):
            cx = size * (i + 0.5) / characters
            _character(draw, rng, attrs, cx, size - 30 * k, scale)
    return img


def render(caption: str, seed: int, size: int = SIZE) -> Image.Image:
    """One training portrait for this caption and seed."""
    return render_scene(caption, seed, 1, size)


def training_captions(prompts: dict[str, str]) -> list[str]:
    """The captions the miniature is trained on: the article's prompts and the extra ones."""
    return [prompts[k] for k in sorted(prompts)] + EXTRA_CAPTIONS


def dataset_item(captions: list[str], index: int, seed: int,
                 size: int = SIZE) -> tuple[str, np.ndarray]:
    """Item `index` of the training set drawn with `seed`: (caption, uint8 HxWx3 image). The
    article's prompts take most of it (each 30%), the extra captions share the rest."""
    rng = np.random.default_rng([seed, index])
    u = rng.random()
    n_main = len(captions) - len(EXTRA_CAPTIONS)
    if u < 0.6:
        caption = captions[int(u / 0.6 * n_main)]
    else:
        caption = captions[n_main + int((u - 0.6) / 0.4 * len(EXTRA_CAPTIONS))]
    return caption, np.asarray(render(caption, int(rng.integers(2**31)), size))
