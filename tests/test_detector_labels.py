"""The detector against labels given by looking at the images: frozen/detector_labels.json
holds a class for each of 620 evaluated generations of the shipped model (every evaluated size,
the usual UNet and the variants that change it most: scripts/label_sheets.py's PLAN and the 20
generations past it per cell where the evaluation has them, in six batches). The first 220 were
labelled before the detector's output on this model's images was looked at, and detector
version 7 was then written against them; the second and third batches (the file's held_out, 84
each) were labelled before version 7 was run on them, the third at 400 px; version 8 was written
against those three, and the fourth batch (80, at 400 px) was labelled before it was, the fifth
(80) and sixth (72, at 400 px, on sheets in a shuffled order) after it was written and before any
detector ran on them: together the held-out check of version 8 (each batch's before_version).
The sixth batch's decodes were sampled again under the frozen speed-ups on a CPU whose default
differs (`label_sheets.py --resample`; the test below checks that path). The labels of the first
two batches' 640 and 768 px decodes (shown at under half their size on the 256 px sheets) are
those of a second, closer look, blind to the first label and the detector (the file's
second_look, which keeps the first look's class where it changed). The frozen evaluation's
records (frozen/evaluation.json, which tests/test_freeze.py holds to today's code) hold the
detector's class for the same generations; agreement is reported per size on the page's four
classes, and for the held-out batches on their own."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import detector, evaluate, spec as specmod

ROOT = Path(__file__).resolve().parents[1]
LABELS_FILE = json.loads((ROOT / "frozen/detector_labels.json").read_text())
LABELS = LABELS_FILE["labels"]
FROZEN = json.loads((ROOT / "frozen/evaluation.json").read_text())
TARGET = 0.95  # agreement the detector is meant to reach at every size


def agreement() -> dict[int, tuple[int, int]]:
    found = evaluate.agreement(LABELS_FILE, FROZEN["records"], FROZEN["key_inputs"]["model"])
    assert found["applies"] and found["n"] == len(LABELS)
    return {s["size"]: (s["agree"], s["n"]) for s in found["sizes"]}


def test_the_labels_cover_every_evaluated_size_with_the_page_s_classes():
    spec = specmod.load(ROOT / "figures.toml")
    records = FROZEN["records"]
    assert LABELS_FILE["model"] == FROZEN["key_inputs"]["model"], \
        "the labels were made on another model's images than the frozen evaluation's"
    assert len(LABELS) >= 200
    assert set(LABELS.values()) == set(detector.CLASSES)
    assert set(LABELS) <= set(records), "a label names a generation the evaluation does not have"
    assert {records[g]["width"] for g in LABELS} == {w for w, _ in spec.evaluation["sizes"]}
    assert sum(n for _, n in agreement().values()) == len(LABELS)  # the page's count: every label


def test_the_second_look_covers_every_decode_the_sheets_shrank_and_its_classes_are_the_labels():
    from scripts.label_sheets import SIDE, labelled_closer

    second = LABELS_FILE["second_look"]
    closer = labelled_closer(LABELS_FILE)  # labelled at over 256 px in the first place
    shrunk = [g for g in LABELS if FROZEN["records"][g]["width"] > 2 * SIDE and g not in closer]
    assert second["looked_at"] == len(shrunk) > 0
    for gen, (first, again) in second["changed"].items():
        assert gen in shrunk and first != again and {first, again} <= set(detector.CLASSES)
        assert LABELS[gen] == again  # the closer look is the label; the first is kept beside it


@pytest.mark.xfail(strict=True, reason="version 8 still misses ghost features fainter or less "
                                       "regular than a pair of eyes, ghost heads with no eyes, "
                                       "and calls noise-wrecked decodes with no eye left "
                                       "malformed: 89% at 768x768 (214 of 240; 79 of the 92 "
                                       "held out), 97% at 640x640, the other sizes at 98% or "
                                       "more (scripts/detector_agreement.py lists the misses)")
def test_the_detector_agrees_with_the_labels_at_every_size():
    found = agreement()
    print("detector vs labels: " + ", ".join(f"{s}: {a}/{n}" for s, (a, n) in found.items()))
    assert all(a / n >= TARGET for a, n in found.values()), found


def test_resampling_for_labels_uses_the_frozen_speed_ups_and_resumes(tmp_path, monkeypatch):
    """scripts/label_sheets.py --resample: the labelled images are the frozen evaluation's, so a
    CPU whose default path differs samples them again under the frozen speed-ups; what it has
    sampled is kept, with its cache key, and loaded rather than sampled again after an
    interruption; latents made under other speed-ups are not taken for them."""
    import torch

    from pipeline import model, sampling, speedups
    from scripts.label_sheets import resample

    spec = specmod.load(ROOT / "figures.toml")
    used = FROZEN["key_inputs"]["speedups"]
    model.prepare(str(ROOT / model.PREVIEW_DIR), tmp_path / "model.json")
    comps = model.load(str(tmp_path / "model.json"), "cpu", speedups.arg(used))
    gen = spec.evaluation_cells(FROZEN["seeds"], comps.info["geometry"])[((200, 200), "usual")][0]
    got = {}
    resample(comps, spec, [gen], tmp_path / "latents", lambda g, z: got.setdefault("first", z))
    z, prov = sampling.load_latents(tmp_path / "latents" / f"{gen.id}.safetensors")
    assert prov["speedups"] == used and prov["generation"] == gen.id
    assert torch.equal(z, got["first"])

    sampled = []
    real = sampling.sample_generations
    monkeypatch.setattr(sampling, "sample_generations",
                        lambda comps, spec, gens, *a, **k: (sampled.extend(gens),
                                                           real(comps, spec, gens, *a, **k)))
    resample(comps, spec, [gen], tmp_path / "latents", lambda g, z: got.setdefault("again", z))
    assert sampled == [] and torch.equal(got["again"], got["first"])
    other = model.load(str(tmp_path / "model.json"), "cpu", speedups.NONE)  # fp32: another key
    resample(other, spec, [gen], tmp_path / "latents", lambda g, z: got.setdefault("fp32", z))
    assert sampled == [gen] and not torch.equal(got["fp32"], got["first"])


def test_every_labelled_generation_is_taken_hardest_first_and_decodes_name_their_latents(
        tmp_path):
    """scripts/label_sheets.py --labelled: every labelled generation once, the detector's hard
    cases at 640 px and over first (a miss, or a face of four eyes or more), then the small sizes,
    then the rest; a labels file naming a generation the evaluation does not hold is refused.
    Each saved decode names the latents it came from, so a resumed run decodes only what is new."""
    from PIL import Image

    from pipeline import geometry
    from pipeline.files import write_png
    from scripts.label_sheets import decoded_from, labelled

    spec = specmod.load(ROOT / "figures.toml")
    geo = geometry.load(ROOT / "models/preview")
    gens = labelled(spec, geo, LABELS_FILE, FROZEN)
    assert sorted(g.id for g in gens) == sorted(LABELS)

    def hard(g):
        r = FROZEN["records"][g.id]
        return g.width >= 640 and (r["class"] != LABELS[g.id] or max(r["eyes"], default=0) >= 4)

    n_hard = sum(map(hard, gens))
    assert 0 < n_hard < len(gens) and all(map(hard, gens[:n_hard]))
    rest = gens[n_hard:]
    n_small = sum(g.width <= 512 for g in rest)
    assert all(g.width <= 512 for g in rest[:n_small]) and all(g.width >= 640 for g in rest[n_small:])
    with pytest.raises(SystemExit, match="does not hold"):
        labelled(spec, geo, {"labels": {**LABELS, "blonde-1-999x999-usual": "one"}}, FROZEN)

    path = tmp_path / "images" / "x.png"
    assert decoded_from(path) is None
    write_png(path, Image.new("RGB", (8, 8)), {"latents": "abc123"})
    assert decoded_from(path) == "abc123"


def test_detector_agreement_measures_partial_folders_and_what_a_change_moved(tmp_path, capsys):
    """scripts/detector_agreement.py: with --partial it measures the labelled decodes a folder
    holds and says how many are missing, and on how many the frozen evaluation's class; --before
    REV classifies them with that revision's detector too (loaded from git, not imported), and
    names a revision git does not have."""
    from PIL import Image

    from scripts import detector_agreement

    gen = next(g for g, c in sorted(LABELS.items()) if c == "none")
    (tmp_path / "images").mkdir()
    Image.new("RGB", (200, 200), (90, 110, 150)).save(tmp_path / "images" / f"{gen}.png")
    with pytest.raises(SystemExit, match="--partial"):
        detector_agreement.main([str(tmp_path)])
    detector_agreement.main([str(tmp_path), "--partial", "--before", "HEAD"])
    out = capsys.readouterr().out
    assert f"{len(LABELS) - 1} of {len(LABELS)} labelled decodes not there yet" in out
    assert f"detector version {detector.VERSION}: 1 of 1 agree" in out and "moved" not in out
    same = FROZEN["records"][gen]["class"] == "none"  # the frozen evaluation's is its version's
    assert f"the frozen evaluation's class on {int(same)} of 1 decodes" in out
    assert detector_agreement.detector_at("HEAD").CLASSES == detector.CLASSES
    with pytest.raises(SystemExit, match="no-such-revision"):
        detector_agreement.detector_at("no-such-revision")
