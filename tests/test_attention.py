"""Attention variants (section 6): the rules, their installation per UNet level, the probe."""
import math

import pytest
import torch

from pipeline import attention, geometry, preview_model, probe

TRAIN = 512


@pytest.fixture(scope="module")
def unet(preview_model_dir):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(preview_model_dir / "unet").eval()


@pytest.fixture(scope="module")
def geom(preview_model_dir):
    return geometry.load(preview_model_dir)


def forward(unet, size, variant, geom, probe_=None):
    torch.manual_seed(0)
    x = torch.randn(2, 4, size // 8, size // 8)
    ctx = torch.randn(2, 77, preview_model.UNET["cross_attention_dim"])
    procs = attention.install(unet, variant, geom, size, size, probe_)
    with torch.no_grad():
        out = unet(x, 500, encoder_hidden_states=ctx).sample
    return out, procs


@pytest.mark.parametrize("variant", [v for v in attention.VARIANTS if v != "usual"])
def test_every_variant_is_the_usual_attention_at_the_trained_size(unet, geom, variant):
    usual, _ = forward(unet, TRAIN, "usual", geom)
    out, procs = forward(unet, TRAIN, variant, geom)
    assert procs, "the variant installed no processor"
    torch.testing.assert_close(out, usual, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", [v for v in attention.VARIANTS if v != "usual"])
def test_every_variant_changes_the_output_away_from_the_trained_size(unet, geom, variant):
    usual, _ = forward(unet, 768, "usual", geom)
    out, _ = forward(unet, 768, variant, geom)
    assert (out - usual).abs().max() > 1e-3


def test_variants_touch_self_attention_only(unet, geom):
    procs = attention.install(unet, "topk-mask", geom, 768, 768)
    assert procs and all(".attn1" in name for name in procs)
    own = {n: type(p) for n, p in unet.attn_processors.items() if ".attn2." in n}
    assert own and not any(t is attention.VariantProcessor for t in own.values())
    attention.install(unet, "usual", geom, 768, 768)
    assert not any(isinstance(p, attention.VariantProcessor) for p in unet.attn_processors.values())


def test_topk_denominator_with_k_equal_n_is_the_softmax():
    scores = torch.randn(2, 3, 50, 64) * 4
    torch.testing.assert_close(attention.topk_denominator(scores, 64), scores.softmax(-1))
    torch.testing.assert_close(attention.topk_denominator(scores, 1000), scores.softmax(-1))
    torch.testing.assert_close(attention.topk_mask(scores, 64), scores.softmax(-1))


def test_topk_rules_by_hand():
    scores = torch.tensor([[2.0, 0.0, 1.0, -1.0]])
    e = (scores - 2).exp()
    want = e / (e[0, 0] + e[0, 2])  # the two largest exp(x - max)
    torch.testing.assert_close(attention.topk_denominator(scores, 2), want)
    masked = attention.topk_mask(scores, 2)
    kept = e * torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    torch.testing.assert_close(masked, kept / kept.sum())
    assert attention.topk_denominator(scores, 2).sum() > 1  # more mass than a softmax


@pytest.mark.parametrize("size", [256, 768])
def test_logit_scale_factor_per_level_is_the_closed_form(unet, geom, size):
    seen = {}

    class Recorder:
        active = True

        def hook(self, proc):
            return lambda w: seen.setdefault(proc.name, w.shape[-1])

    _, procs = forward(unet, size, "logit-scale", geom, Recorder())
    # the preview UNet: self-attention at levels 1 and 2 and in the mid block (level 3)
    side = size // 8
    for name, proc in procs.items():
        level = attention.level_of(name, 4)
        n = math.ceil(side / 2 ** level) ** 2
        n_train = (TRAIN // 8 // 2 ** level) ** 2
        assert seen[name] == n == proc.n  # the keys the layer really saw
        assert proc.n_train == n_train
        assert proc.factor == pytest.approx(math.sqrt(math.log(n) / math.log(n_train)), rel=1e-12)
        assert (proc.factor > 1) == (size > TRAIN)
    assert {attention.level_of(n, 4) for n in procs} == {1, 2, 3}


def test_chunked_and_unchunked_attention_agree():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 4, 300, 16) for _ in range(3))
    scale = 16 ** -0.5
    for variant in attention.VARIANTS:
        whole = attention.attend(q, k, v, scale, variant, 100, probe=lambda w: None,
                                 budget=1 << 40)
        blocked = attention.attend(q, k, v, scale, variant, 100, probe=lambda w: None,
                                   budget=2 * 4 * 300 * 4 * 3 * 7)  # 7 queries per block
        torch.testing.assert_close(blocked, whole)
    assert attention.query_block(8, 300, 2 * 4 * 300 * 4 * 3 * 7) == 7


def test_block_size_respects_the_memory_budget():
    # SD 1.5's top level at 768x768: 9216 keys, 8 heads, the CFG pair of 8 images
    rows = attention.query_block(16 * 8, 9216)
    assert rows * 16 * 8 * 9216 * 4 * 3 <= attention.BUDGET_BYTES
    assert rows >= 1


def test_the_cpu_uses_cache_sized_blocks_and_the_gpu_large_ones():
    assert attention.block_budget(torch.device("cpu")) == attention.CPU_BUDGET_BYTES
    assert attention.block_budget(torch.device("cuda")) == attention.BUDGET_BYTES
    assert attention.CPU_BUDGET_BYTES < attention.BUDGET_BYTES


def test_topk_rules_match_their_definitions_on_random_scores():
    torch.manual_seed(3)
    scores = torch.randn(2, 3, 40, 500) * 4
    k = 123
    top = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, scores.topk(k, -1).indices, True)
    masked = scores.masked_fill(~top, float("-inf")).softmax(-1)
    torch.testing.assert_close(attention.topk_mask(scores, k), masked)
    e = (scores - scores.amax(-1, keepdim=True)).exp()
    torch.testing.assert_close(attention.topk_denominator(scores, k),
                               e / (e * top).sum(-1, keepdim=True))
    assert (attention.topk_mask(scores, k) > 0).sum(-1).eq(k).all()


def test_fused_and_explicit_paths_agree():
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 2, 64, 8) for _ in range(3))
    for variant in attention.FUSED:
        fused = attention.attend(q, k, v, 8 ** -0.5, variant, 16)
        explicit = attention.attend(q, k, v, 8 ** -0.5, variant, 16, probe=lambda w: None)
        torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)


def test_entropy_matches_a_direct_computation():
    torch.manual_seed(3)
    p = torch.randn(5, 40).softmax(-1)
    direct = torch.tensor([-sum(x * math.log(x) for x in row.tolist()) for row in p])
    torch.testing.assert_close(probe.entropy(p), direct.float())
    uniform = torch.full((1, 64), 1 / 64)
    assert probe.entropy(uniform).item() == pytest.approx(math.log(64), rel=1e-6)
    with_zeros = torch.tensor([[0.5, 0.5, 0.0, 0.0]])  # masked keys contribute nothing
    assert probe.entropy(with_zeros).item() == pytest.approx(math.log(2), rel=1e-6)
    assert probe.entropy(with_zeros * 3).item() == pytest.approx(math.log(2), rel=1e-6)


def test_probe_records_per_generation_statistics(unet, geom):
    layers = attention.self_attention_layers(unet)
    pr = probe.Probe(gens=1, histogram_layer=layers[0], bins=20, log_min=-12.0)
    pr.active = True
    forward(unet, 256, "usual", geom, pr)
    result = pr.result(0, 4)
    assert [x["name"] for x in result["layers"]] == layers
    for layer in result["layers"]:
        assert 0 < layer["entropy"] <= math.log(layer["n"]) + 1e-6
        assert layer["mass"] == pytest.approx(1.0, abs=1e-5)
    assert sum(result["histogram"]["density"]) == pytest.approx(1.0)


def test_kth_largest_matches_topk():
    torch.manual_seed(4)
    s = torch.randn(3, 5, 70)
    for k in (1, 7, 35, 70):
        want = s.topk(k, dim=-1).values[..., -1:]
        torch.testing.assert_close(attention.kth_largest(s, k), want, rtol=0, atol=0)


def test_the_probe_claims_separation_only_where_logit_scaling_undoes_the_size_change():
    from pipeline import emit

    assert emit.SEPARATES == 0.25  # the threshold the cases below sit on either side of
    barely = emit.logit_verdict(trained=7.0, usual=7.4, scaled=7.392)  # undoes 2%
    assert barely["undone_pct"] == 2 and barely["logit_key"] == "barely"
    under = emit.logit_verdict(trained=7.0, usual=7.4, scaled=7.304)  # undoes 24%
    assert under["logit_key"] == "barely"
    over = emit.logit_verdict(trained=7.0, usual=7.4, scaled=7.296)  # undoes 26%
    assert over["logit_key"] == "separates"
    clear = emit.logit_verdict(trained=7.0, usual=7.4, scaled=7.1)
    assert clear["undone_pct"] == 75 and clear["size_move"] == 0.4
    assert clear["logit_key"] == "separates"
    smaller = emit.logit_verdict(trained=7.0, usual=6.5, scaled=6.8)  # fewer keys: sharper
    assert smaller["undone_pct"] == 60 and smaller["logit_key"] == "separates"
    wrong_way = emit.logit_verdict(trained=7.0, usual=7.4, scaled=7.42)
    assert wrong_way["undone_pct"] == 5 and wrong_way["logit_key"] == "wrong-way"
    still = emit.logit_verdict(trained=7.0, usual=7.001, scaled=6.9)
    assert still["undone_pct"] is None and still["logit_key"] == "no-move"


def test_a_topk_rule_with_no_more_keys_than_in_training_is_the_usual_kernel():
    """k >= n keeps every key: the rule is the softmax, and it takes the usual attention's own
    fused kernel, so its images are byte for byte the usual ones (also under bf16)."""
    from pipeline.attention import attend

    g = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.bfloat16):
        q, k, v = (torch.randn(2, 1, 64, 16, generator=g).to(dtype) for _ in range(3))
        usual = attend(q, k, v, 0.25, "usual", 64)
        for variant in ("topk-mask", "topk-denominator"):
            assert torch.equal(attend(q, k, v, 0.25, variant, 64), usual)
            assert torch.equal(attend(q, k, v, 0.25, variant, 100), usual)


def test_the_explicit_path_computes_bf16_inputs_in_fp32_even_under_autocast():
    """Under the CPU's bf16 autocast the explicit path must not round logits and weights to
    bf16: from bf16 inputs it gives the fp32 computation on those inputs, to fp32 rounding."""
    from pipeline.attention import attend

    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 1, 300, 32, generator=g).to(torch.bfloat16) for _ in range(3))
    exact = attend(q.float(), k.float(), v.float(), 32 ** -0.5, "topk-mask", 100)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = attend(q, k, v, 32 ** -0.5, "topk-mask", 100)
    assert got.dtype == torch.bfloat16
    # only the final rounding of the output to bf16 (8 bits: 2**-9 relative at most)
    assert ((got.float() - exact).abs() <= exact.abs() * 2 ** -8 + 1e-6).all()
