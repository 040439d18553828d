"""The hair and outfit reader (pipeline/appearance.py) on portraits whose attributes are known."""
import itertools

import numpy as np
import pytest

from conftest import _dim_face, _speckled
from pipeline import appearance, captions, detector, portraits

COMBOS = list(itertools.product(captions.HAIR, captions.OUTFIT, captions.LENGTH))


def _caption(hair, outfit, length, scene="oriental"):
    return captions.canonical({"hair": hair, "outfit": outfit, "long_hair": length == "long",
                               "scene": scene})


@pytest.mark.parametrize("hair,outfit,length", COMBOS)
def test_every_combination_reads_as_drawn(hair, outfit, length):
    for seed, (count, size) in enumerate([(1, 512), (1, 512), (2, 768), (3, 768)]):
        img = np.asarray(portraits.render_scene(_caption(hair, outfit, length), seed, count, size))
        found = appearance.characters(img)
        assert len(found) == count
        assert [(c["hair"], c["outfit"]) for c in found] == [(hair, outfit)] * count, seed


def test_a_colour_drift_does_not_change_the_reading():
    """A model's decodes drift in colour (the evaluation's colour error); a uniform shift of 20
    levels, or a 10% loss of saturation, leaves every reading as drawn."""
    for (hair, outfit, length), seed in zip(COMBOS, itertools.count()):
        img = np.asarray(portraits.render(_caption(hair, outfit, length), seed)).astype(np.float32)
        grey = img.mean(axis=2, keepdims=True)
        for tinted in (img + [20, 10, -20], img - 20, grey + 0.9 * (img - grey)):
            tinted = np.clip(tinted, 0, 255).astype(np.uint8)
            assert [(c["hair"], c["outfit"]) for c in appearance.characters(tinted)] \
                == [(hair, outfit)], (hair, outfit, length)


def test_a_wrong_prompt_is_told_apart_and_an_unseen_region_reads_none():
    img = np.asarray(portraits.render(_caption("blonde", "uniform", "long"), 3))
    chars = appearance.characters(img)
    assert appearance.follows(chars, {"hair": "blonde", "outfit": "uniform"}) == [True]
    assert appearance.follows(chars, {"hair": "blonde"}) == [True]
    assert appearance.follows(chars, {"hair": "black", "outfit": "uniform"}) == [False]
    assert appearance.follows(chars, {"hair": "blonde", "outfit": "shrine"}) == [False]
    assert appearance.follows(appearance.characters(np.zeros_like(img)), {"hair": "black"}) == []
    (face,) = chars
    # the same face moved to the image's bottom edge: no garment below it to read
    x0, y0, x1, y1 = face["box"]
    edge = {"box": (x0, img.shape[0] - (y1 - y0), x1, img.shape[0])}
    assert appearance.read(img, edge)["outfit"] is None


def test_the_palette_is_the_one_the_portraits_draw():
    """The shrine's white haori is pushed away from the skin colour by portraits.py: the reader's
    palette is the drawn colour, not the nominal one."""
    nominal = np.asarray(portraits.OUTFIT["shrine"][0], np.float32)
    assert np.linalg.norm(appearance.GARMENT["shrine"] - nominal) > 50
    img = np.asarray(portraits.render(_caption("black", "shrine", "long"), 0)).astype(np.float32)
    (face,) = appearance.characters(img.astype(np.uint8))
    assert face["outfit"] == "shrine"


def test_the_characters_read_are_the_ones_the_detector_counts():
    """appearance.characters reads the faces detector.analyse counts, dim ones included, and none
    that analyse would not look for (dim faces in a noise-wrecked image)."""
    rendered = np.asarray(portraits.render_scene(_caption("black", "shrine", "long"), 1, 2))
    dim = _dim_face(np.full((512, 512, 3), 50, np.uint8))
    for img, n in ((rendered, 2), (dim, 1), (_speckled(dim), 0)):
        assert len(appearance.characters(img)) == detector.analyse(img)["characters"] == n
