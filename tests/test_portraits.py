"""The training data renderer and the detector for its domain."""
import numpy as np
import pytest
from PIL import Image

from conftest import _dim_face, _speckled
from pipeline import detector, files, portraits, spec as specmod

SPEC = specmod.load("figures.toml")
CAPTIONS = portraits.training_captions(SPEC.prompts)


def test_same_caption_and_seed_give_the_same_bytes():
    a = files.png_bytes(portraits.render(SPEC.prompts["miko"], 7))
    b = files.png_bytes(portraits.render(SPEC.prompts["miko"], 7))
    c = files.png_bytes(portraits.render(SPEC.prompts["miko"], 8))
    assert a == b and a != c
    assert portraits.render(SPEC.prompts["miko"], 7).size == (portraits.SIZE, portraits.SIZE)
    caption, item = portraits.dataset_item(CAPTIONS, 3, 0)
    again = portraits.dataset_item(CAPTIONS, 3, 0)
    assert caption == again[0] and np.array_equal(item, again[1])


def test_the_articles_prompts_are_in_distribution():
    miko = portraits.attributes(SPEC.prompts["miko"])
    blonde = portraits.attributes(SPEC.prompts["blonde"])
    assert miko == {"hair": "black", "long_hair": True, "outfit": "shrine", "scene": "oriental"}
    assert blonde["hair"] == "blonde" and blonde["scene"] == "baroque"
    assert set(SPEC.prompts.values()) <= set(CAPTIONS)
    # the data really draws what the caption asks for: black hair is dark, blonde is light
    img = np.asarray(portraits.render(SPEC.prompts["miko"], 1)).astype(int)
    hair = np.abs(img - portraits.HAIR["black"]).sum(-1) < 60
    assert hair.mean() > 0.02


@pytest.mark.parametrize("caption", CAPTIONS)
@pytest.mark.parametrize("characters", [0, 1, 2, 3])
def test_detector_counts_rendered_characters(caption, characters):
    for seed in range(3):
        img = np.asarray(portraits.render_scene(caption, seed, characters))
        assert detector.count_characters(img) == characters, (caption, seed)


def test_every_training_portrait_holds_exactly_one_character():
    counts = [detector.count_characters(portraits.dataset_item(CAPTIONS, i, 5)[1])
              for i in range(80)]
    assert counts == [1] * 80


def test_a_skin_coloured_disc_without_eyes_is_not_a_head():
    img = np.full((512, 512, 3), 60, np.uint8)
    yy, xx = np.mgrid[:512, :512]
    img[(yy - 200) ** 2 + (xx - 250) ** 2 < 70 ** 2] = portraits.SKIN
    assert detector.count_characters(img) == 0
    img[(yy - 190) ** 2 + (xx - 225) ** 2 < 10 ** 2] = (30, 20, 40)  # two eyes make it a face
    img[(yy - 190) ** 2 + (xx - 275) ** 2 < 10 ** 2] = (30, 20, 40)
    assert detector.count_characters(img) == 1


TINTS = {  # colour shifts a model might put on its faces (the fixed-skin detector missed them all)
    "greener": lambda x: x * [0.8, 1.0, 0.85] + [0, 25, 10],
    "cooler": lambda x: x * [0.85, 0.95, 1.0] + [0, 0, 30],
    "dimmer": lambda x: x * 0.8,
}


@pytest.mark.parametrize("tint", sorted(TINTS))
def test_detector_counts_characters_whose_colours_are_shifted(tint):
    shift = TINTS[tint]
    face = np.clip(shift(np.array(portraits.SKIN, float)), 0, 255)
    assert np.linalg.norm(face - portraits.SKIN) > 40  # far from the colour the faces were drawn in
    for caption in CAPTIONS:
        for characters in range(4):
            img = np.asarray(portraits.render_scene(caption, characters, characters)).astype(float)
            img = np.clip(shift(img), 0, 255).astype(np.uint8)
            assert detector.count_characters(img) == characters, (caption, characters)


def test_a_face_is_light_not_vivid_and_bounded():
    yy, xx = np.mgrid[:512, :512]
    eyes = ((yy - 190) ** 2 + (xx - 225) ** 2 < 10 ** 2) | ((yy - 190) ** 2 + (xx - 275) ** 2 < 10 ** 2)
    disc = (yy - 200) ** 2 + (xx - 250) ** 2 < 70 ** 2
    for colour, heads in (((200, 215, 190), 1), ((255, 40, 140), 0), ((95, 80, 75), 0)):
        img = np.full((512, 512, 3), 60, np.uint8)
        img[disc] = colour
        img[eyes] = (30, 20, 40)
        assert detector.count_characters(img) == heads, colour  # pale green: yes; pink, dark: no
    sky = np.full((512, 512, 3), 220, np.uint8)  # two dark dots in a wide light field
    sky[eyes] = (30, 20, 40)
    assert detector.count_characters(sky) == 0


def test_a_dim_face_spans_no_more_than_max_share_of_the_image(monkeypatch):
    """A dim ring across a 256² image, two dark dots on its band: no larger than MAX_PIXELS,
    within REACH of its dots, enclosing them, yet as wide as the image: a wall, not a face. A
    face of the usual lightness may fill the image (the model draws close-ups at 200²)."""
    yy, xx = np.mgrid[:256, :256]
    r2 = (yy - 128) ** 2 + (xx - 128) ** 2
    dots = ((yy - 128) ** 2 + (xx - 30) ** 2 < 6 ** 2) | ((yy - 128) ** 2 + (xx - 226) ** 2 < 6 ** 2)

    def ring(skin):
        img = np.full((256, 256, 3), 60, np.uint8)
        img[(r2 < 120 ** 2) & (r2 > 75 ** 2)] = skin
        img[dots] = (30, 20, 40)
        return img

    dim, usual = ring((120, 118, 112)), ring((200, 215, 190))
    assert detector.count_characters(dim) == 0
    assert detector.count_characters(usual) == 1
    monkeypatch.setattr(detector, "MAX_SHARE", 1.0)
    assert detector.count_characters(dim) == 1  # what ruled the dim one out was its span


def test_a_dim_face_counts_only_where_no_face_of_usual_lightness_does():
    """A decode can dim a lone face below FACE_LUMA; beside a face of the usual lightness a dim
    one is a wall or a ghost, and in a noise-wrecked image the speckle draws dim faces of its own."""
    field = np.full((512, 512, 3), 50, np.uint8)
    dim = _dim_face(field)
    skin = dim[200, 250].astype(float) @ detector.LUMA
    assert detector.DIM_FACE_LUMA <= skin < detector.FACE_LUMA
    assert detector.analyse(dim)["class"] == "one"
    assert detector.faces(dim, clean=False) == []
    bright = np.asarray(portraits.render(CAPTIONS[0], 1)).copy()
    assert len(detector.faces(bright)) == 1
    beside = _dim_face(bright, centre=(90, 440))
    assert len(detector.faces(beside)) == 1  # the dim one is not looked for
    assert len(detector.faces(_dim_face(beside, centre=(90, 440), colour=portraits.SKIN))) == 2
    speckled = _speckled(dim)
    assert len(detector.faces(speckled, clean=True)) == 1
    assert detector.faces(speckled) == []  # by default not looked for in a wrecked image
    assert detector.analyse(speckled)["characters"] == 0


def test_a_face_is_found_where_its_skin_runs_on_into_a_near_colour():
    """Decodes blur a face into blonde hair or a neck within FACE_DISTANCE of its skin; the face
    is then the region a tighter tolerance gives, when that one fits a face's bounds."""
    yy, xx = np.mgrid[:512, :512]
    eyes = ((yy - 190) ** 2 + (xx - 225) ** 2 < 10 ** 2) | ((yy - 190) ** 2 + (xx - 275) ** 2 < 10 ** 2)
    disc = (yy - 200) ** 2 + (xx - 250) ** 2 < 70 ** 2
    skin = np.array(portraits.SKIN)
    for near, heads in ((skin - [21, 19, 15], 1), (skin - [8, 8, 6], 0)):
        gap = np.linalg.norm(near - skin)
        img = np.full((512, 512, 3), near, np.uint8)
        img[disc] = skin
        img[eyes] = (30, 20, 40)
        # 32 levels apart: inside FACE_DISTANCE, outside its tightest tolerance: a face;
        # 13 apart: one field at every tolerance, as wide as a wall: no face
        assert (min(detector.TOLERANCES) * detector.FACE_DISTANCE < gap < detector.FACE_DISTANCE) \
            == bool(heads)
        assert detector.count_characters(img) == heads, near


def test_colour_error_separates_distorted_renders_from_clean_ones():
    ref = detector.reference(portraits.dataset_item(CAPTIONS, i, 11)[1] for i in range(32))
    clean = [portraits.dataset_item(CAPTIONS, i, 12)[1] for i in range(8)]
    fried = [np.clip((im.astype(float) - 128) * 2.5 + 128, 0, 255).astype(np.uint8)
             for im in clean]
    washed = [(im.astype(float) * 0.4 + 90).astype(np.uint8) for im in clean]
    err = lambda ims: np.mean([detector.analyse(im, ref)["colour_error"] for im in ims])  # noqa
    assert err(clean) < 1.5
    assert err(fried) > 3 * err(clean) and err(washed) > 2 * err(clean)
    stats = detector.colour_stats(fried[0])
    assert stats["clipped"] > detector.colour_stats(clean[0])["clipped"]


def test_colour_statistics_on_known_images():
    grey = np.full((8, 8, 3), 128, np.uint8)
    assert detector.colour_stats(grey) == {"saturation": 0.0, "contrast": 0.0, "clipped": 0.0}
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    s = detector.colour_stats(red)
    assert s["saturation"] == pytest.approx(1.0) and s["clipped"] == 1.0
    half = np.zeros((8, 8, 3), np.uint8)
    half[:4] = 255
    assert detector.colour_stats(half)["contrast"] == pytest.approx(0.5)


def test_detector_reads_an_image_file(tmp_path):
    path = tmp_path / "x.png"
    files.write_png(path, portraits.render_scene(SPEC.prompts["blonde"], 4, 2))
    with Image.open(path) as img:
        assert detector.analyse(img.convert("RGB"))["characters"] == 2


DARK_EYE = (25, 20, 30)  # a third eye as dark as the face's own
FAINT = (120, 114, 124)  # a faint eye, as decodes draw a ghost's: lighter than DARK, far below skin


def _third_eye(img: np.ndarray, colour=DARK_EYE) -> np.ndarray:
    """The image with a third eye painted on its one face, between and below the other two."""
    from PIL import ImageDraw

    (face,) = detector.faces(img)
    x0, y0, x1, y1 = face["box"]
    out = Image.fromarray(img.copy())
    cx, cy = (x0 + x1) // 2, y0 + (y1 - y0) * 2 // 3
    ImageDraw.Draw(out).ellipse((cx - 7, cy - 6, cx + 7, cy + 6), fill=colour)
    return np.asarray(out)


@pytest.mark.parametrize("caption", CAPTIONS)
def test_a_face_with_a_third_eye_is_malformed_and_a_training_face_is_not(caption):
    skin = np.array(portraits.SKIN, np.float32) @ detector.LUMA
    assert detector.DARK < np.array(FAINT, np.float32) @ detector.LUMA < detector.EYE_RATIO * skin
    for seed in range(3):
        img = np.asarray(portraits.render(caption, seed))
        found = detector.faces(img)
        assert [f["eyes"] for f in found] == [detector.EYES]
        assert detector.analyse(img)["class"] == "one"
        for colour in (DARK_EYE, FAINT):
            bad = _third_eye(img, colour)
            assert [f["eyes"] for f in detector.faces(bad)] == [detector.EYES + 1], (caption, seed)
            assert detector.analyse(bad)["class"] == "malformed"


def _one_eye(img: np.ndarray) -> np.ndarray:
    """The image with its one face's rightmost eye painted over in the colour beside it."""
    from PIL import ImageDraw

    (face,) = detector.faces(img)
    x0, y0, x1, y1 = face["box"]
    luma = img[y0:y1, x0:x1].astype(np.float32) @ detector.LUMA
    ys, xs = np.nonzero(luma < detector.DARK)
    right = xs > (xs.min() + xs.max()) / 2
    ex0, ex1 = x0 + xs[right].min() - 3, x0 + xs[right].max() + 3
    ey0, ey1 = y0 + ys[right].min() - 3, y0 + ys[right].max() + 3
    out = Image.fromarray(img.copy())
    ImageDraw.Draw(out).rectangle((ex0, ey0, ex1, ey1), fill=tuple(int(v) for v in img[ey0 - 4, ex0]))
    return np.asarray(out)


@pytest.mark.parametrize("caption", CAPTIONS[:2])
def test_a_one_eyed_face_and_a_noise_wrecked_image_are_malformed(caption):
    img = np.asarray(portraits.render(caption, 1))
    assert detector.noise(img) < detector.NOISE
    one_eyed = _one_eye(img)
    assert [f["eyes"] for f in detector.faces(one_eyed)] == [1]
    assert detector.analyse(one_eyed)["class"] == "malformed"
    wrecked = _speckled(img)
    assert detector.noise(wrecked) > detector.NOISE
    assert detector.analyse(wrecked)["class"] == "malformed"
    two = np.asarray(portraits.render_scene(caption, 1, 2))
    assert detector.classify(detector.faces(two), noisy=True) == "duplicated"  # two still told apart
    assert detector.classify([], noisy=False) == "none"


def test_each_image_falls_into_one_class():
    caption = CAPTIONS[0]
    classes = [detector.analyse(np.asarray(portraits.render_scene(caption, 1, k)))["class"]
               for k in (0, 1, 2, 3)]
    assert classes == ["none", "one", "duplicated", "duplicated"]


def _pair(img: np.ndarray, row: int, centre: int, apart: int, radius: int = 9,
          ratio: float | None = None) -> None:
    """Paints two dark eyes `apart` pixels apart, side by side, on row `row` of the image; with
    `ratio`, each that times the colour around it (14 px above its centre): a ghost's."""
    yy, xx = np.mgrid[:img.shape[0], :img.shape[1]]
    for x in (centre - apart // 2, centre + apart // 2):
        colour = DARK_EYE if ratio is None else (img[row - 14, x] * ratio).astype(np.uint8)
        img[(yy - row) ** 2 + (xx - x) ** 2 < radius ** 2] = colour


def test_two_faces_stacked_in_one_mass_of_skin_are_two_and_one_face_is_not_split():
    """A decode at 768x768 can stack two faces in one mass of hair of nearly the skin's colour:
    one region, its eyes in two groups far apart (more than STACK eye spacings), is two faces.
    A face's own third spot close below its eyes, or a collar's band, does not split it."""
    img = np.full((512, 512, 3), (70, 60, 90), np.uint8)
    img[100:420, 195:315] = portraits.SKIN  # 38,400 px: within MAX_PIXELS
    stacked = img.copy()
    _pair(stacked, 160, 255, 50)
    _pair(stacked, 300, 255, 50)  # 140 px below: 2.8 eye spacings
    assert 140 > detector.STACK * 50
    assert [f["eyes"] for f in detector.faces(stacked)] == [2, 2]
    assert detector.analyse(stacked)["class"] == "duplicated"
    upper, lower = sorted(detector.faces(stacked), key=lambda f: f["box"][1])
    assert upper["box"][3] <= lower["box"][1] and upper["box"][1] == 100 and lower["box"][3] == 420
    close = img.copy()
    _pair(close, 160, 255, 50)
    _pair(close, 215, 230, 0)  # one spot 55 px below the eyes: not a second face's
    assert [f["eyes"] for f in detector.faces(close)] == [3]
    assert detector.analyse(close)["class"] == "malformed"
    collar = img.copy()
    _pair(collar, 160, 255, 50)
    collar[330:354, 231:279] = DARK_EYE  # a band over four times an eye's area: not alike
    assert detector.analyse(collar)["class"] == "malformed"  # three holes, but one face


def test_hair_of_the_skin_s_colour_around_a_face_is_not_a_second_face():
    """Hair nearly the skin's colour, grown into a region from a dark mark of its own, can hold
    the face as a hole (a thin outline between them): the face inside is the head, not two."""
    skin = np.array(portraits.SKIN)
    img = np.full((512, 512, 3), (70, 60, 90), np.uint8)
    yy, xx = np.mgrid[:512, :512]
    img[130:360, 150:350] = skin - [12, 14, 10]  # the hair: within FACE_DISTANCE of the skin
    ring = (yy - 220) ** 2 + (xx - 250) ** 2
    img[ring < 70 ** 2] = DARK_EYE  # the face's outline, keeping hair and face apart
    img[ring < 62 ** 2] = skin
    _pair(img, 210, 250, 50)
    img[312:324, 300:324] = DARK_EYE  # a mark in the hair, eye-shaped: a face is grown from it
    assert [f["eyes"] for f in detector.faces(img)] == [2]
    assert detector.analyse(img)["class"] == "one"


def test_a_faint_face_beside_a_face_is_a_second_character_and_alone_is_none():
    """A decode at 768x768 draws a second character as a ghost: its eyes only faintly darker than
    its skin (here 0.8 times: lighter than DARK), its skin dimmer than a face's. Beside a face
    found by its dark eyes it counts; with no such face it is not looked for, nor with one eye."""
    img = np.full((512, 512, 3), (70, 60, 90), np.uint8)
    img[150:300, 90:200] = portraits.SKIN
    _pair(img, 200, 145, 44)
    ghost_skin = (176, 166, 152)
    assert np.array(ghost_skin, np.float32) @ detector.LUMA >= detector.FAINT_FACE_LUMA
    two = img.copy()
    two[150:300, 310:420] = ghost_skin
    _pair(two, 200, 365, 44, ratio=0.8)
    assert 0.8 * 166 > detector.DARK  # the ghost's eyes are not dark: v7 saw one face here
    assert [f["eyes"] for f in detector.faces(two)] == [2, 2]
    assert detector.analyse(two)["class"] == "duplicated"
    alone = two.copy()
    alone[150:300, 90:200] = (70, 60, 90)
    assert detector.faces(alone) == []
    one_eyed = two.copy()
    one_eyed[180:220, 375:400] = ghost_skin  # the ghost's right eye gone: no pair, no face
    assert detector.analyse(one_eyed)["class"] == "one"
    assert detector.faces(two, clean=False) == detector.faces(img, clean=False)  # not in a wreck


def test_a_ghost_s_pair_of_eyes_in_a_face_makes_it_malformed():
    """A decode can draw a ghost's features faintly inside a face: a second pair of eyes, spaced
    like the face's own (within SPACING times), only faintly darker than the skin. A single
    faint spot, a pair spaced unlike the eyes, or one fainter than GHOST does not."""
    img = np.full((512, 512, 3), (70, 60, 90), np.uint8)
    img[110:360, 185:335] = portraits.SKIN
    _pair(img, 260, 260, 50)
    assert detector.analyse(img)["class"] == "one"
    ghost = img.copy()
    _pair(ghost, 170, 260, 50, ratio=0.85)
    assert [f["eyes"] for f in detector.faces(ghost)] == [4]
    assert detector.analyse(ghost)["class"] == "malformed"
    wide = img.copy()
    _pair(wide, 170, 260, 110, ratio=0.85)  # 2.2 times the eyes' spacing
    assert detector.analyse(wide)["class"] == "one"
    pale = img.copy()
    _pair(pale, 170, 260, 50, ratio=0.97)
    assert detector.analyse(pale)["class"] == "one"
    spot = img.copy()
    _pair(spot, 170, 260, 0, ratio=0.85)
    assert detector.analyse(spot)["class"] == "one"
