import tomllib
from pathlib import Path

import pytest

from pipeline import spec as specmod
from pipeline.spec import SpecError

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "figures.toml"


def raw():
    return tomllib.loads(SPEC.read_text())


def test_default_spec_matches_the_article():
    spec = specmod.load(SPEC)
    ids = [f.id for f in spec.figures]
    assert ids == ["hero", "symptoms-768", "baseline-512", "symptoms-256", "decoders-768",
                   "decoders-256", "kernel-footprint", "conv-fixes-768", "conv-fixes-256",
                   "fixes-768", "fixes-256", "fixes-200",
                   "attention-entropy", "attention-logprob", "vae-logvar", "vae-perturbation"]
    hero = spec.figure("hero")
    assert [(g.width, g.prompt, g.seed) for g in hero.cells] == [
        (s, "miko", 715317074) for s in (200, 256, 512, 768)]
    assert hero.thumb == 175
    assert spec.figure("baseline-512").toggle == "Show"
    assert [r.toggle for r in spec.figure("symptoms-768").rows] == [None, "Show approx decodes"]
    # The comparison tables reuse the grids' cells, they do not list them again.
    assert spec.figure("decoders-768").cells == spec.figure("symptoms-768").cells
    assert spec.sampling["steps"] == 22 and spec.sampling["guidance"] == 7.5


def test_shared_generations_are_sampled_once():
    spec = specmod.load(SPEC)
    gens = spec.article_generations()
    assert len(gens) == len(set(gens))
    # hero 768 = symptoms-768's last cell = the overlay's 768 cell: one generation
    g = specmod.Generation("miko", 715317074, 768, 768)
    users = [f.id for f in spec.figures if g in f.cells]
    assert users == ["hero", "symptoms-768", "decoders-768", "kernel-footprint", "conv-fixes-768",
                     "fixes-768"]
    assert sum(1 for x in spec.all_generations() if x == g) == 1
    # the VAE and approx rows of one latent are two decodes of one generation
    decodes = [d for d in spec.decodes() if d.gen == g]
    assert sorted(d.decoder for d in decodes) == ["approx", "vae"]


def test_approx_training_is_held_apart():
    spec = specmod.load(SPEC)
    article = set(spec.article_generations())
    assert not article & set(spec.approx_train)
    assert not article & set(spec.approx_heldout)
    assert not set(spec.approx_train) & set(spec.approx_heldout)


def _parse(data):
    return specmod.parse(data, SPEC)


def test_size_not_multiple_of_8():
    data = raw()
    data["figure"][0]["cells"][0]["size"] = 196
    with pytest.raises(SpecError) as e:
        _parse(data)
    msg = str(e.value)
    assert "figure 'hero' cell 1" in msg and "196" in msg and "use 192 or 200" in msg
    assert "\n" not in msg


def test_unknown_prompt_key():
    data = raw()
    data["figure"][1]["cells"][2]["prompt"] = "brunette"
    with pytest.raises(SpecError, match=r"figure 'symptoms-768' cell 3: unknown prompt key "
                                        r"'brunette'; known keys are blonde, miko"):
        _parse(data)


def test_duplicate_figure_id():
    data = raw()
    data["figure"][2]["id"] = "hero"
    with pytest.raises(SpecError, match=r"figures #1 and #3 share the id 'hero'"):
        _parse(data)


@pytest.mark.parametrize("table, key, value, expect", [
    ("sampling", "guidance", "high", r"\[sampling\]: guidance = 'high' must be a number in 0..100"),
    ("sampling", "steps", 22.5, r"\[sampling\]: steps = 22.5 must be an integer in 2..1000"),
    ("sampling", "rho", True, r"\[sampling\]: rho = True must be a number"),
    ("sampling", "sigma_max", "14", r"\[sampling\]: sigma_max = '14' must be a number"),
    ("sampling", "negative_prompt", 0, r"\[sampling\]: negative_prompt must be a string"),
    ("approx_decoder", "hidden", "12", r"\[approx_decoder\]: hidden = '12' must be an integer"),
    ("approx_decoder", "epochs", 0, r"\[approx_decoder\]: epochs = 0 must be an integer in 1"),
    ("approx_decoder", "lr", "fast", r"\[approx_decoder\]: lr = 'fast' must be a number"),
    ("approx_decoder", "seed", -1, r"\[approx_decoder\]: seed = -1 must be an integer"),
    ("probe", "bins", 1.5, r"\[probe\]: bins = 1.5 must be an integer in 2..10000"),
    ("probe", "layer", "0", r"\[probe\]: layer = '0' must be an integer"),
    ("probe", "log_min", 3, r"\[probe\]: log_min = 3 must be a number in -1000"),
    ("vae_anomaly", "threshold", "2%", r"\[vae_anomaly\]: threshold = '2%' must be a number in 0..1"),
    ("vae_anomaly", "robust_z", 0, r"\[vae_anomaly\]: robust_z = 0 must be a number in 1..1000"),
])
def test_numeric_fields_are_checked_at_load(table, key, value, expect):
    data = raw()
    data[table][key] = value
    with pytest.raises(SpecError, match=expect) as e:
        _parse(data)
    assert "\n" not in str(e.value)


def test_non_integer_section_and_unknown_caption_field_fail_at_load():
    data = raw()
    data["figure"][1]["section"] = "two"
    with pytest.raises(SpecError, match=r"figure 'symptoms-768': section 'two' must be a whole"):
        _parse(data)
    data = raw()
    data["figure"][0]["caption"] = "Measured {psnr} dB"
    with pytest.raises(SpecError, match=r"figure 'hero': caption placeholder \{psnr\} is not a "
                                        r"measured number; only the VAE analysis plots"):
        _parse(data)
    data = raw()
    plot = next(f for f in data["figure"] if f.get("plot") == "perturbation")
    plot["caption"] += " {anomalous_chnaged}"
    with pytest.raises(SpecError, match=r"placeholder \{anomalous_chnaged\} is not a measured "
                                        r"number; use one of threshold"):
        _parse(data)
    data = raw()
    data["figure"][0]["caption"] = "An unbalanced { brace"
    with pytest.raises(SpecError, match=r"caption is not a valid template"):
        _parse(data)


def test_unknown_field_and_decoder_and_attention():
    data = raw()
    data["figure"][0]["thumbs"] = 10
    with pytest.raises(SpecError, match=r"unknown field 'thumbs'"):
        _parse(data)
    data = raw()
    data["figure"][0]["rows"][0]["decoder"] = "taesd"
    with pytest.raises(SpecError, match=r"unknown decoder 'taesd'"):
        _parse(data)
    data = raw()
    data["figure"][0]["cells"][0]["variant"] = "flash"
    with pytest.raises(SpecError, match=r"unknown variant 'flash'; use one of usual, "):
        _parse(data)


def test_training_seed_shown_in_article_is_refused():
    data = raw()
    data["approx_decoder"]["train"][0]["seed"] = 715317074
    with pytest.raises(SpecError, match="held apart"):
        _parse(data)


def test_non_square_sizes_are_allowed():
    data = raw()
    data["figure"][0]["cells"][0]["size"] = [512, 256]
    g = _parse(data).figure("hero").cells[0]
    assert (g.width, g.height) == (512, 256) and g.id == "miko-715317074-512x256-usual"


def test_stage_registries_match_the_spec_vocabulary():
    from pipeline import attention, decode, overlays, sampling, schedule

    assert set(decode.DECODERS) == set(specmod.DECODERS)
    assert set(overlays.OVERLAYS) == set(specmod.OVERLAYS)
    from pipeline import interventions, variants

    assert set(attention.VARIANTS) == {"usual", *variants.ATTENTION_RULES}
    assert set(interventions.KINDS) | set(variants.PROCEDURES) | {"combine"} == set(variants.KINDS)
    assert set(sampling.SAMPLERS) == set(specmod.SAMPLERS)
    assert set(schedule.SCHEDULES) == set(specmod.SCHEDULES)


def test_plot_registry_matches_the_spec_vocabulary():
    from pipeline import plots

    assert set(plots.PLOTS) == set(specmod.PLOTS)


def test_compare_figures_expand_each_cell_across_the_variants():
    spec = specmod.load(SPEC)
    fig = spec.figure("fixes-768")
    rows = fig.compare_rows()
    assert [[g.variant for g in row] for row in rows] == [list(fig.variants)] * len(rows)
    assert all(len({(g.prompt, g.seed, g.width) for g in row}) == 1 for row in rows)
    # every probed (size, variant, seed) is one generation, stopped at the probe step
    assert len(spec.probe_generations()) == (len(spec.probe["sizes"]) * len(spec.probe["variants"])
                                             * len(spec.probe["seeds"]))


def test_bad_variant_and_probe_input_is_named():
    data = raw()
    fig = next(f for f in data["figure"] if f.get("layout") == "compare")
    fig["variants"] = ["usual", "top-k"]
    with pytest.raises(SpecError, match=r"unknown variant 'top-k'; use one of usual"):
        _parse(data)
    data = raw()
    data["probe"]["step"] = 22
    with pytest.raises(SpecError, match=r"step 22 must be an integer in 0..21"):
        _parse(data)
    data = raw()
    plot = next(f for f in data["figure"] if f.get("plot") == "logprob")
    plot["sizes"] = [1024]
    with pytest.raises(SpecError, match=r"size 1024x1024 is not one the \[probe\] measures"):
        _parse(data)
    data = raw()
    del data["probe"]
    with pytest.raises(SpecError, match=r"needs a \[probe\] table"):
        _parse(data)
    data = raw()
    data["figure"][0]["variants"] = ["usual"]
    with pytest.raises(SpecError, match=r"only applies to layout = \"compare\""):
        _parse(data)
