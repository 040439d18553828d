"""Variants as general interventions (pipeline/variants.py, interventions.py and each kind's
module): checked at load, the identity where they should be, exactly removed after sampling,
inactive outside their step window, with the right feature shapes at every size the spec makes."""
import copy

import pytest
import torch

from pipeline import (feature_resize, geometry, hires_fix, interventions, preview_model,
                      redilation, spec as specmod, variants, window_attention)

TRAIN = 512
SPEC = specmod.load("figures.toml")
SIZES = sorted({g.width for g in SPEC.all_generations()} | {w for w, _ in SPEC.evaluation["sizes"]})
UNET_KINDS = [name for name, v in SPEC.variants.items()
              if v["kind"] not in ("usual", "hires") and name in (
                  "logit-scale", "redilate", "deep-shrink", "window", "redilate-window",
                  "redilate-l0123")]


@pytest.fixture(scope="module")
def unet(preview_model_dir):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(preview_model_dir / "unet").eval()


@pytest.fixture(scope="module")
def geom(preview_model_dir):
    return geometry.load(preview_model_dir)


def run(unet, size, name, geom, step=0, steps=10, table=None):
    """One UNet call at `step` of `steps` under variant `name` (installed, called, removed)."""
    table = table or SPEC.variants
    torch.manual_seed(0)
    x = torch.randn(2, 4, size // 8, size // 8)
    ctx = torch.randn(2, 77, preview_model.UNET["cross_attention_dim"])
    clock = interventions.Clock(steps)
    clock.step = step
    interventions.install(unet, table, name, geom, size, size, clock)
    try:
        with torch.no_grad():
            return unet(x, 500, encoder_hidden_states=ctx).sample
    finally:
        interventions.restore(unet)


def state(unet):
    """Everything a change could leave behind: weights, processors, forward overrides, hooks."""
    procs = {n: type(p).__name__ for n, p in unet.attn_processors.items()}
    overrides = [n for n, m in unet.named_modules() if "forward" in m.__dict__]
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in unet.modules())
    weights = {k: v.clone() for k, v in unet.state_dict().items()}
    return procs, overrides, hooks, weights


@pytest.mark.parametrize("name", UNET_KINDS)
def test_each_kind_is_the_identity_at_the_trained_size(unet, geom, name):
    assert variants.is_identity(SPEC.variants, name, geom, TRAIN, TRAIN)
    torch.testing.assert_close(run(unet, TRAIN, name, geom), run(unet, TRAIN, "usual", geom),
                               rtol=1e-4, atol=1e-4)


HALF = variants.load({  # each kind with a step window of half the steps
    "r": {"kind": "redilate", "levels": [2, 3], "until": 0.5},
    "s": {"kind": "resize", "level": 0, "until": 0.5},
    "w": {"kind": "window", "until": 0.5},
    "a": {"kind": "attention", "rule": "topk-mask", "until": 0.5},
    "rw": {"kind": "combine", "parts": ["r", "w"]},
})


@pytest.mark.parametrize("name", ["r", "s", "w", "a", "rw"])
def test_each_kind_changes_the_output_inside_its_window_and_not_outside(unet, geom, name):
    usual = run(unet, 768, "usual", geom)
    for step in range(5):
        assert (run(unet, 768, name, geom, step=step, table=HALF) - usual).abs().max() > 1e-3
    for step in range(5, 10):
        assert torch.equal(run(unet, 768, name, geom, step=step, table=HALF), usual)


def test_the_mirror_enlarges_small_images_deep_features(unet, geom):
    usual = run(unet, 256, "usual", geom)
    assert (run(unet, 256, "deep-enlarge", geom) - usual).abs().max() > 1e-3
    assert torch.equal(run(unet, 256, "deep-enlarge", geom, step=9), usual)


@pytest.mark.parametrize("name", UNET_KINDS + ["deep-enlarge"])
def test_after_sampling_the_unet_is_exactly_restored(unet, geom, name):
    before = state(unet)
    run(unet, 768, name, geom)
    run(unet, 256, name, geom)
    after = state(unet)
    assert before[:3] == after[:3]
    assert all(torch.equal(before[3][k], after[3][k]) for k in before[3])


def test_a_zero_step_window_is_the_identity_everywhere(unet, geom):
    table = variants.load({"r0": {"kind": "redilate", "levels": [0, 1, 2, 3], "until": 0}})
    assert variants.is_identity(table, "r0", geom, 768, 768)
    assert torch.equal(run(unet, 768, "r0", geom, table=table), run(unet, 768, "usual", geom))


def test_windows_cover_every_query_once_and_match_full_attention_with_one_window():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 12 * 10, 8) for _ in range(3))
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.3)
    one = window_attention.attend_windowed(q, k, v, (12, 10), (1, 1), False, 0.3)
    torch.testing.assert_close(one, full)
    # with windows, each query's output is attention over exactly its window's keys
    out = window_attention.attend_windowed(q, k, v, (12, 10), (2, 2), True, 0.3)
    grid = lambda t: t.reshape(1, 2, 12, 10, 8)
    rolled = [grid(t).roll((-3, -2), (2, 3)) for t in (q, k, v)]
    win = [t[:, :, 6:12, 0:5].reshape(1, 2, 30, 8) for t in rolled]
    expect = torch.nn.functional.scaled_dot_product_attention(*win, scale=0.3)
    got = grid(out).roll((-3, -2), (2, 3))[:, :, 6:12, 0:5].reshape(1, 2, 30, 8)
    torch.testing.assert_close(got, expect)


def test_windows_never_hold_more_keys_than_in_training():
    for h in range(1, 200):
        count = window_attention.windows(h, h, 32, 32)
        assert -(-h // count[0]) <= 32


def test_integer_dilation_is_a_dilated_convolution_and_fractional_keeps_the_size():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 20, 20)
    out = redilation.dilated(conv, (2.0, 2.0), x)
    ref = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=2, dilation=2)
    torch.testing.assert_close(out, ref)
    assert redilation.dilated(conv, (1.5, 1.25), x).shape == (1, 4, 20, 20)


@pytest.mark.parametrize("size", SIZES)
def test_feature_shapes_are_right_at_every_size_the_spec_makes(unet, geom, size):
    """Under each kind the deep features have the trained size while resized, every level's
    skip connection meets a feature map of its own size, and the output is the input's size."""
    seen = {}  # the feature map each down block receives, by level

    def record(level):
        def hook(module, args, kwargs):
            x = kwargs.get("hidden_states", args[0] if args else None)
            seen[level] = tuple(x.shape[-2:])
        return hook

    hooks = [block.register_forward_pre_hook(record(i), with_kwargs=True)
             for i, block in enumerate(unet.down_blocks)]
    try:
        for name in ("redilate-l0123", "deep-shrink", "window", "redilate-window"):
            out = run(unet, size, name, geom)
            assert out.shape[-2:] == (size // 8, size // 8), name
        run(unet, size, "deep-shrink", geom)
        sizes = geometry.level_sizes(geom, size, size)
        trained = geometry.level_sizes(geom, TRAIN, TRAIN)
        assert seen[0] == (sizes[0][1], sizes[0][0])
        assert seen[1] == (trained[1][1], trained[1][0])   # resized after the top down block
        assert seen[2] == (trained[2][1], trained[2][0])   # and the levels below run at theirs
        run(unet, size, "usual", geom)
        assert seen[1] == (sizes[1][1], sizes[1][0])
    finally:
        for h in hooks:
            h.remove()


def test_hires_fix_starts_its_second_stage_part_way_down_the_schedule():
    assert hires_fix.start_step(22, 0.5) == 11
    assert hires_fix.start_step(22, 1.0) == 0
    assert hires_fix.start_step(22, 0.01) == 21


@pytest.mark.parametrize("table, field", [
    ({"x": {"kind": "warp"}}, "unknown kind 'warp'"),
    ({"x": {"kind": "redilate", "levels": [3], "until": 1.5}}, "until = 1.5"),
    ({"x": {"kind": "redilate", "levels": [3], "until": -0.1}}, "until = -0.1"),
    ({"x": {"kind": "redilate"}}, "missing field 'levels'"),
    ({"x": {"kind": "resize", "level": 0, "levels": [1]}}, "field 'levels' does not apply"),
    ({"x": {"kind": "hires", "denoise": 0}}, "denoise = 0"),
    ({"x": {"kind": "hires", "denoise": 0.5, "until": 0.5}}, "field 'until' does not apply"),
    ({"x": {"kind": "attention", "rule": "flat"}}, "rule = 'flat'"),
    ({"x": {"kind": "combine", "parts": ["y", "z"]}}, "parts names 'y'"),
    ({"usual": {"kind": "window"}}, "cannot be redefined"),
])
def test_bad_variant_tables_fail_in_one_line_naming_variant_and_field(table, field):
    with pytest.raises(variants.VariantError) as err:
        variants.load(table)
    message = str(err.value)
    assert "\n" not in message and field in message
    assert message.startswith(f"[variant.{next(iter(table))}]")


def test_a_level_the_model_does_not_have_is_refused_naming_the_variant(geom):
    table = variants.load({"deep": {"kind": "redilate", "levels": [7]},
                           "low": {"kind": "resize", "level": 3}})
    with pytest.raises(variants.VariantError, match=r"\[variant.deep\]: levels: this UNet has no "
                                                    r"level 7"):
        variants.check_geometry({"deep": table["deep"]}, geom)
    with pytest.raises(variants.VariantError, match=r"\[variant.low\]: level = 3"):
        variants.check_geometry({"low": table["low"]}, geom)
    variants.check_geometry(SPEC.variants, geom)  # the shipped spec's variants all fit


def test_the_spec_names_a_bad_variant_by_file(tmp_path):
    import tomllib

    data = tomllib.loads(open("figures.toml").read())
    data["variant"]["redilate"]["until"] = 2
    with pytest.raises(specmod.SpecError, match=r"figures.toml \[variant.redilate\]: until = 2"):
        specmod.parse(data, tmp_path / "figures.toml")


def test_a_variant_s_table_is_part_of_its_generations_recipe():
    g = next(g for g in SPEC.all_generations() if g.variant == "redilate")
    table = copy.deepcopy(SPEC.variants)
    changed = copy.copy(SPEC)
    changed.variants = {**table, "redilate": {**table["redilate"], "until": 0.5}}
    assert SPEC.recipe(g) != changed.recipe(g)
    assert SPEC.recipe(g)["intervention"] == SPEC.variants["redilate"]


def test_evaluation_cells_measure_identity_variants_on_the_usual_images(geom):
    cells = SPEC.evaluation_cells(2, geom)
    assert cells[((256, 256), "hires-fix")][0].variant == "hires-fix"
    assert cells[((768, 768), "redilate")][0].variant == "redilate"
    for (size, name), gens in cells.items():
        same = variants.is_identity(SPEC.variants, name, geom, *size)
        assert {g.variant for g in gens} == {"usual" if same else name}
    for sweep in SPEC.evaluation["sweeps"]:
        for name in sweep["variants"]:
            assert (sweep["size"], name) in cells
