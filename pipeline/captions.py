"""Training captions that must be read: varied descriptions of each portrait's attributes.

The first miniature was trained on six fixed captions, one per attribute combination, and learnt
to ignore them (its text embeddings of the two article prompts were 99% alike and its conditional
noise prediction within about 1% of the unconditional one). Here every training item draws its
attributes (hair colour and length, outfit, scene) and is described in words chosen for it: the
phrases in a random order, synonyms, some attributes left out (then the image shows whichever the
item drew, so an unnamed attribute is not implied by the others), and filler words of the kind
the article's prompts carry (artist names, "masterpiece"), which say nothing about the image. The
article's own two prompts describe a share of the items whose attributes they name, word for word.

`item(prompts, index, seed)` gives an item's caption and attributes; the portrait renderer draws
the attributes from `canonical(attrs)`, the words it reads (pipeline/portraits.attributes).
`vocabulary(prompts)` is every word a caption can hold: the tokenizer gives each one token.
"""
from __future__ import annotations

import re

import numpy as np

VERSION = 1  # bump when the captions change: part of the training provenance

HAIR = ("black", "blonde", "brown")
LENGTH = ("long", "short")
OUTFIT = ("shrine", "baroque", "uniform")
SCENE = ("oriental", "baroque", "city")
# the renderer's words cannot put a baroque gown in a city (portraits.attributes reads "baroque"
# as the scene before "city"); every other combination is drawn
EXCLUDED = {("baroque", "city")}

HAIR_WORDS = {"black": ("black", "dark", "raven", "jet black"),
              "blonde": ("blonde", "golden", "blond", "yellow"),
              "brown": ("brown", "chestnut", "auburn", "light brown")}
PERSON = {"shrine": ("shrine maiden", "miko", "a girl", "a young woman"),
          "baroque": ("a noblewoman", "a girl", "a young woman", "a lady"),
          "uniform": ("a schoolgirl", "a student", "a girl", "a young woman")}
OUTFIT_WORDS = {"shrine": ("shrine maiden outfit", "red hakama", "white haori", "miko costume"),
                "baroque": ("baroque dress", "blue gown", "gold trimmed gown", "court dress"),
                "uniform": ("school uniform", "navy blazer", "sailor collar", "uniform")}
SCENE_WORDS = {"oriental": ("oriental scenic", "vaporwave dusk", "torii gate", "sunset shrine"),
               "baroque": ("baroque scenic", "palace interior", "arched windows", "ornate hall"),
               "city": ("city scenic", "city street", "downtown", "buildings in daylight")}
OPENING = ("character portrait of", "portrait of", "upper body portrait of", "a picture of",
           "illustration of", "")
FILLER = ("masterpiece", "artgerm", "pixiv featured", "global illumination", "4k hdr",
          "trending on artstation", "highly detailed", "by wlop", "rossdraws", "ilya kuvshinov",
          "looking at viewer", "soft lighting", "sharp focus", "full resolution")
ARTICLE_SHARE = 0.3   # items described by one of the article's prompts (when its attributes fit)
MENTION = 0.8         # chance each attribute is named


def draw_attributes(rng: np.random.Generator) -> dict:
    while True:
        attrs = {"hair": HAIR[rng.integers(3)], "long_hair": bool(rng.random() < 0.6),
                 "outfit": OUTFIT[rng.integers(3)], "scene": SCENE[rng.integers(3)]}
        if (attrs["outfit"], attrs["scene"]) not in EXCLUDED:
            return attrs


def canonical(attrs: dict) -> str:
    """The words portraits.attributes reads back as exactly these attributes."""
    hair = {"black": "", "blonde": "blonde", "brown": "brown hair"}[attrs["hair"]]
    length = "long" if attrs["long_hair"] else "short"
    return " ".join(w for w in (hair, length, attrs["outfit"], attrs["scene"]) if w)


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def describe(attrs: dict, rng: np.random.Generator) -> str:
    """A caption for these attributes: some named (in varied words and order), fillers mixed in."""
    hair = _pick(rng, HAIR_WORDS[attrs["hair"]])
    length = "long" if attrs["long_hair"] else "short"
    phrases = []
    if rng.random() < MENTION:  # hair colour, with the length or alone
        phrases.append(f"{length} {hair} hair" if rng.random() < 0.6 else f"{hair} hair")
    elif rng.random() < 0.5:
        phrases.append(f"{length} hair")
    if rng.random() < MENTION:
        phrases.append(_pick(rng, OUTFIT_WORDS[attrs["outfit"]]))
    if rng.random() < MENTION:
        phrases.append(_pick(rng, SCENE_WORDS[attrs["scene"]]))
    phrases += [_pick(rng, FILLER) for _ in range(int(rng.integers(0, 4)))]
    rng.shuffle(phrases)
    opening = _pick(rng, OPENING)
    person = _pick(rng, PERSON[attrs["outfit"]]) if rng.random() < 0.7 else "a girl"
    subject = f"{opening} {person}".strip()
    return ", ".join([subject, *phrases])


def item(prompts: dict[str, str], index: int, seed: int) -> tuple[str, dict]:
    """Training item `index`'s caption and attributes (the same for the same arguments)."""
    from .portraits import attributes

    rng = np.random.default_rng([seed, index, 7])
    if rng.random() < ARTICLE_SHARE and prompts:
        key = sorted(prompts)[int(rng.integers(len(prompts)))]
        return prompts[key], attributes(prompts[key])
    attrs = draw_attributes(rng)
    return describe(attrs, rng), attrs


WORD = re.compile(r"[a-z]+")


def vocabulary(prompts: dict[str, str]) -> list[str]:
    """Every word (run of letters, lower case, as CLIP's tokenizer splits them) that a training
    caption can hold, sorted."""
    tables = [HAIR_WORDS, PERSON, OUTFIT_WORDS, SCENE_WORDS]
    texts = [w for t in tables for options in t.values() for w in options]
    texts += [*OPENING, *FILLER, *prompts.values(), "hair", "long", "short", "a girl"]
    return sorted({w for text in texts for w in WORD.findall(text.lower())})


def dataset_item(prompts: dict[str, str], index: int, seed: int,
                 size: int = 512) -> tuple[str, np.ndarray]:
    """Item `index` of the varied training set: (caption, uint8 HxWx3 portrait of its
    attributes)."""
    from .portraits import render

    caption, attrs = item(prompts, index, seed)
    image_seed = int(np.random.default_rng([seed, index]).integers(2**31))
    return caption, np.asarray(render(canonical(attrs), image_seed, size))
