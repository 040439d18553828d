"""The evaluation (section 6): interval arithmetic on known cases, the cells figures.toml asks for,
and the per-cell summary and contact sheet on planted detector results."""
import math
from pathlib import Path

import pytest

from pipeline import detector, evaluate, geometry, intervals, spec as specmod
from pipeline.spec import SpecError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("successes, n, lo, hi", [
    (0, 10, 0.0, 0.27753), (5, 10, 0.23659, 0.76341), (10, 10, 0.72247, 1.0),
    (1, 32, 0.00554, 0.15744), (16, 32, 0.33631, 0.66369),
])
def test_wilson_interval_known_cases(successes, n, lo, hi):
    got = intervals.wilson(successes, n)
    assert got == pytest.approx((lo, hi), abs=2e-5)


def test_wilson_closed_form_at_zero_and_refuses_no_data():
    z = intervals.Z95
    for n in (1, 2, 7, 100):
        assert intervals.wilson(0, n)[1] == pytest.approx(z * z / (n + z * z))
    with pytest.raises(ValueError):
        intervals.wilson(0, 0)


def test_bootstrap_mean_interval():
    assert intervals.bootstrap_mean([2.5] * 7) == (2.5, 2.5)
    values = [0.1 * i for i in range(40)]
    lo, hi = intervals.bootstrap_mean(values)
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    half = 1.96 * sd / math.sqrt(len(values))  # the normal approximation, for comparison
    assert lo < mean < hi
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert intervals.bootstrap_mean(values) == (lo, hi)  # seeded: same numbers every run
    assert intervals.bootstrap_mean(values, seed=1) != (lo, hi)


@pytest.mark.parametrize("b, c, p", [
    (0, 0, 1.0), (0, 5, 0.0625), (0, 6, 0.03125), (1, 9, 0.021484375), (3, 3, 1.0),
    (2, 8, 0.109375), (10, 2, 0.0385742),
])
def test_mcnemar_exact_known_cases(b, c, p):
    """Two-sided exact McNemar: twice the binomial(b + c, 1/2) tail at min(b, c), capped at 1
    (R's binom.test(min, b + c)$p.value gives the same)."""
    assert intervals.mcnemar_exact(b, c) == pytest.approx(p, abs=1e-6)
    assert intervals.mcnemar_exact(c, b) == intervals.mcnemar_exact(b, c)


def test_paired_share_counts_discordant_pairs_and_claims_only_what_the_test_does():
    first = [True] * 12 + [False] * 20
    same = intervals.paired_share(first, first)
    assert same["difference"] == 0 and same["p_value"] == 1.0 and not same["significant"]
    assert same["difference_ci"] == (0.0, 0.0)
    # 6 lose the outcome and none gain it: p = 2 / 64, a difference the test calls significant
    fewer = intervals.paired_share(first, [False] * 6 + [True] * 6 + [False] * 20)
    assert (fewer["only_first"], fewer["only_second"]) == (6, 0)
    assert fewer["difference"] == pytest.approx(-6 / 32) and fewer["significant"]
    lo, hi = fewer["difference_ci"]
    assert lo < -6 / 32 < hi < 0
    # 3 lose it and 3 others gain it: the shares are equal, nothing to claim
    swapped = intervals.paired_share(first, [False] * 3 + [True] * 9 + [True] * 3 + [False] * 17)
    assert swapped["first"] == swapped["second"] and swapped["p_value"] == 1.0
    with pytest.raises(ValueError):
        intervals.paired_share(first, first[:-1])


def test_paired_bootstrap_difference_is_seeded_and_pairs_the_values():
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    b = [x + 0.5 for x in a]  # every pair moves by exactly 0.5
    assert intervals.paired_bootstrap_difference(a, b) == (0.5, (0.5, 0.5))
    noisy = [x + d for x, d in zip(a, (0.1, -0.2, 0.4, 0.0, 0.3))]
    assert intervals.paired_bootstrap_difference(a, noisy) == \
        intervals.paired_bootstrap_difference(a, noisy)


def test_cells_share_the_usual_samples_where_a_variant_is_the_usual_attention():
    spec = specmod.load(ROOT / "figures.toml")
    g = geometry.load(ROOT / "models/preview")
    cells = spec.evaluation_cells(3, g)
    e = spec.evaluation
    groups = [e, *e["more"], *({"sizes": [w["size"]], "variants": w["variants"]}
                               for w in e["sweeps"])]
    assert set(cells) == {(s, v) for grp in groups for s in grp["sizes"] for v in grp["variants"]}
    for ((w, h), variant), gens in cells.items():
        assert len(gens) == 3 and all((x.width, x.height) == (w, h) for x in gens)
        assert [x.seed for x in gens] == [e["seed_start"] + i for i in range(3)]
        bigger = w > g["train_size"]
        if variant.startswith("topk"):
            assert {x.variant for x in gens} == {variant if bigger else "usual"}
        if variant == "logit-scale":
            assert {x.variant for x in gens} == {"usual" if w == g["train_size"] else variant}
    unique = spec.evaluation_generations(3, g)
    assert len(unique) == len(set(unique)) == len({x for gs in cells.values() for x in gs})
    shown = {x.seed for x in spec.all_generations()}
    assert not shown & {x.seed for x in spec.evaluation_generations(e["seeds"], g)}


def test_evaluation_seeds_must_be_held_apart_and_enough():
    import tomllib

    data = tomllib.loads((ROOT / "figures.toml").read_text())
    data["evaluation"]["seed_start"] = 715317070
    with pytest.raises(SpecError, match=r"seed 715317074 is in its range .* held apart"):
        specmod.parse(data, ROOT / "figures.toml")
    data = tomllib.loads((ROOT / "figures.toml").read_text())
    data["evaluation"]["seeds"] = 8
    with pytest.raises(SpecError, match=r"seeds = 8 must be an integer in 32"):
        specmod.parse(data, ROOT / "figures.toml")


def test_the_summary_core_and_contact_sheet_on_planted_results():
    from PIL import Image

    from pipeline import detector

    assert intervals.COLOUR_STATS == detector.STATS  # the core averages the detector's stats
    rows = [{"characters": c, "class": k, "colour_error": e, "saturation": 0.1 * c,
             "contrast": 0.2, "clipped": 0.0}
            for c, k, e in [(1, "one", 1.0), (2, "duplicated", 2.0), (0, "none", 3.0),
                            (1, "malformed", 1.5), (3, "duplicated", 2.5)]]
    s = intervals.summarise(rows)
    assert s["n"] == 5 and s["exactly_one"] == 0.2 and s["two_plus"] == 0.4 and s["none"] == 0.2
    assert s["malformed"] == 0.2 and s["malformed_ci"] == intervals.wilson(1, 5)
    assert s["histogram"] == [1, 2, 1, 1] and s["saturation"] == pytest.approx(0.14)
    assert s["two_plus_ci"] == intervals.wilson(2, 5)
    assert s["colour_error"] == pytest.approx(2.0)
    assert s["colour_error_ci"][0] < 2.0 < s["colour_error_ci"][1]
    images = [Image.new("RGB", (64, 64), (i * 20, 0, 0)) for i in range(10)]
    sheet = evaluate.contact_sheet(images, [r % 3 for r in range(10)], thumb=32)
    assert sheet.size == (evaluate.SHEET_COLUMNS * 34, 2 * 34)
    assert sheet.getpixel((20, 20)) == (0, 0, 0)          # first thumbnail, below its label
    assert sheet.getpixel((34 + 20, 20)) == (20, 0, 0)    # second thumbnail


def test_compare_pairs_a_variant_with_the_usual_attention_seed_by_seed():
    def row(c, k, e):
        return {"characters": c, "class": k, "colour_error": e}

    usual = [row(2, "duplicated", 2.0)] * 10 + [row(1, "one", 2.0)] * 22
    fixed = [row(1, "one", 2.5)] * 10 + [row(1, "one", 2.5)] * 12 + [row(1, "malformed", 2.5)] * 10
    vs = intervals.compare(usual, fixed)
    assert vs["malformed"]["only_second"] == 10 and vs["malformed"]["significant"]
    assert vs["two_plus"]["difference"] == pytest.approx(-10 / 32)
    assert vs["two_plus"]["significant"] and vs["two_plus"]["p_value"] == 2 / 2 ** 10
    assert vs["exactly_one"]["only_second"] == 10 and vs["exactly_one"]["only_first"] == 10
    assert vs["colour_error"]["difference"] == pytest.approx(0.5)
    assert vs["colour_error"]["significant"]
    assert not intervals.compare(usual, usual)["two_plus"]["significant"]


def test_on_a_model_the_detector_does_not_know_the_evaluation_is_left_out(tmp_path):
    import json

    from pipeline import emit

    model_json = tmp_path / "model.json"
    model_json.write_text(json.dumps({"kind": "dir", "id": "sd15@abc", "geometry": {}}))
    out = tmp_path / "evaluation.json"
    evaluate.run(str(ROOT / "figures.toml"), str(model_json), "cpu", str(tmp_path), "4",
                 str(out), str(tmp_path), str(ROOT / "frozen/detector_labels.json"))
    result = json.loads(out.read_text())
    assert result == {"applies": False, "model": "sd15@abc"}
    assert emit.evaluation_summary(result, tmp_path, {}) == {"applies": False, "model": "sd15@abc"}
    shortcode = (ROOT / "site/layouts/_shortcodes/evaluation.html").read_text()
    assert "The evaluation is left out of this build" in shortcode


@pytest.mark.parametrize("paired, same, key", [
    ({"n": 32, "significant": True, "difference": -0.3}, False, "lower"),
    ({"n": 32, "significant": True, "difference": 0.2}, False, "higher"),
    ({"n": 32, "significant": False, "difference": -0.3}, False, "no-difference"),
    ({"n": 7, "significant": True, "difference": -0.5}, False, "too-few"),
    ({"n": 8, "significant": True, "difference": -0.5}, False, "lower"),
    ({"n": 32, "significant": True, "difference": -0.3}, True, "same-images"),
])
def test_verdict_keys_sit_on_the_right_side_of_their_thresholds(paired, same, key):
    from pipeline import emit

    assert emit.verdict(paired, same) == key


def test_agreement_counts_the_labelled_generations_the_records_hold_for_the_labelled_model():
    def rec(width, cls):
        return {"width": width, "class": cls}

    records = {"a": rec(512, "one"), "b": rec(512, "duplicated"), "c": rec(768, "duplicated"),
               "d": rec(768, "none")}
    labels = {"model": "m1", "labels": {"a": "one", "b": "one", "c": "duplicated",
                                               "x": "none"}}
    found = evaluate.agreement(labels, records, "m1")
    assert found["applies"] and (found["agree"], found["n"]) == (2, 3)
    assert [(s["size"], s["agree"], s["n"]) for s in found["sizes"]] == [(512, 1, 2), (768, 1, 1)]
    assert [s["misses"] for s in found["sizes"]] == [
        [{"label": "one", "detector": "duplicated", "n": 1}], []]  # which way it erred, and where
    assert found["held_out"] is None  # no batch labelled after the detector's last change
    later = {**labels, "held_out": [
        {"how": "later", "before_version": detector.VERSION, "generations": ["b", "c", "y"]},
        {"how": "earlier", "before_version": detector.VERSION - 1, "generations": ["a"]}]}
    held = evaluate.agreement(later, records, "m1")["held_out"]  # a: seen by this version
    assert (held["agree"], held["n"]) == (1, 2)  # b and c: y is not among the records
    assert [(s["size"], s["agree"], s["n"]) for s in held["sizes"]] == [(512, 0, 1), (768, 1, 1)]
    assert found["second_look"] is None
    closer = {**labels, "second_look": {"how": "closer", "looked_at": 2,
                                        "changed": {"c": ["one", "duplicated"]}}}
    assert evaluate.agreement(closer, records, "m1")["second_look"] == {"looked_at": 2,
                                                                         "changed": 1}
    assert evaluate.agreement(labels, records, "m2") == {"applies": False, "why": "other-model"}
    assert evaluate.agreement(labels, {"d": rec(768, "none")}, "m1") == {
        "applies": False, "why": "none-labelled"}
