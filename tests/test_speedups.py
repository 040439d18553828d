"""The UNet speed-ups (pipeline/speedups.py): what a CPU can check of a path meant for CUDA —
each computes what the plain UNet computes, the attention variants and the probe still install
on a sped-up UNet, bad names fail clearly — and the CPU path's own: bf16 autocast stays within
bf16 rounding, its workers give the same bytes however they are scheduled, and every choice is
in the provenance and the cache key."""
import pytest
import torch

from pipeline import attention, geometry, speedups


@pytest.fixture()
def unet(preview_model_dir):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(preview_model_dir / "unet").eval()


def run(unet, names=(), size=64, variant=None, geom=None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, size // 8, size // 8, generator=g)
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    if "channels_last" in names:
        x = x.to(memory_format=torch.channels_last)
    if variant is not None:
        attention.install(unet, variant, geom, size, size)
    with torch.no_grad():
        return unet(x, 500, encoder_hidden_states=ctx).sample


@pytest.mark.parametrize("names", [("channels_last",), ("fused_qkv",), ("cudnn_benchmark",),
                                   ("channels_last", "cudnn_benchmark", "fused_qkv")])
def test_each_speedup_computes_what_the_plain_unet_computes(preview_model_dir, names):
    from diffusers import UNet2DConditionModel

    plain = run(UNet2DConditionModel.from_pretrained(preview_model_dir / "unet").eval())
    fast = UNet2DConditionModel.from_pretrained(preview_model_dir / "unet").eval()
    try:
        out = run(speedups.apply(fast, names), names)
    finally:
        torch.backends.cudnn.benchmark = False
    torch.testing.assert_close(out, plain, rtol=1e-4, atol=1e-5)
    if "fused_qkv" in names:  # it did fuse: one projection per self-attention
        processors = {type(p).__name__ for p in fast.attn_processors.values()}
        assert processors == {"FusedAttnProcessor2_0"}
        assert all(m.to_qkv is not None for n, m in fast.named_modules() if n.endswith("attn1"))


@pytest.mark.parametrize("variant", ["logit-scale", "topk-mask"])
def test_attention_variants_install_on_a_fused_unet_and_give_the_same_output(
        unet, preview_model_dir, variant):
    from diffusers import UNet2DConditionModel

    geom = geometry.load(preview_model_dir)
    plain = run(unet, size=128, variant=variant, geom=geom)
    fused = speedups.apply(UNet2DConditionModel.from_pretrained(preview_model_dir / "unet").eval(),
                           ["fused_qkv"])
    torch.testing.assert_close(run(fused, size=128, variant=variant, geom=geom), plain,
                               rtol=1e-4, atol=1e-5)
    attention.restore(fused)  # back to the fused processors, not diffusers' unfused ones
    assert {type(p).__name__ for p in fused.attn_processors.values()} == {"FusedAttnProcessor2_0"}


def test_compiling_wraps_the_module_and_keeps_its_attributes(unet):
    for name in speedups.COMPILERS:
        wrapped = speedups.apply(unet, [name])
        assert wrapped is not unet and wrapped._orig_mod is unet
        assert wrapped.config.sample_size == unet.config.sample_size  # the sampler reads these
        assert wrapped.attn_processors.keys() == unet.attn_processors.keys()


def test_unknown_or_conflicting_names_fail_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown speed-up fast; known: channels_last"):
        speedups.check(["fast"])
    with pytest.raises(ValueError, match="give one"):
        speedups.check(["compiled", "compiled_graphs"])
    with pytest.raises(ValueError, match="compiled_autotune, compiled are ways to compile"):
        speedups.check(["channels_last", "compiled_autotune", "compiled"])
    for names in speedups.DEFAULTS.values():
        assert speedups.check(names) == names


def test_the_cpu_default_uses_bf16_autocast_only_where_the_cpu_has_bf16_instructions(
        monkeypatch):
    from pipeline import machine

    with_bf16 = {"flags": "fpu avx2 avx512f avx512_bf16"}
    without = {"flags": "fpu avx2 fma"}
    assert machine.bf16_flags(with_bf16) == ["avx512_bf16"]
    assert machine.bf16_flags({"flags": "amx_bf16 amx_tile avx512_bf16"}) == ["amx_bf16",
                                                                             "avx512_bf16"]
    assert machine.bf16_flags(without) == []
    monkeypatch.setattr(machine, "cpu_fields", lambda: with_bf16)
    assert speedups.parse("default", "cpu") == speedups.DEFAULTS["cpu"]
    assert "bf16_autocast" in speedups.DEFAULTS["cpu"]
    monkeypatch.setattr(machine, "cpu_fields", lambda: without)
    assert speedups.parse("default", "cpu") == speedups.CPU_WITHOUT_BF16
    assert speedups.parse(None, "cpu") == ("channels_last", "cpu_workers")
    assert speedups.parse("channels_last+bf16_autocast", "cpu") == ("channels_last",
                                                                    "bf16_autocast")
    assert speedups.parse("default", "cuda") == speedups.DEFAULTS["cuda"]
    assert speedups.arg(()) == "none"
    assert speedups.arg(("channels_last", "cpu_workers")) == "channels_last+cpu_workers"
    assert speedups.check(speedups.CPU_WITHOUT_BF16) == speedups.CPU_WITHOUT_BF16


def test_the_speedups_argument_names_a_path_per_device(monkeypatch):
    from pipeline import machine

    monkeypatch.setattr(machine, "cpu_fields", lambda: {"flags": "avx512_bf16"})
    assert speedups.parse(None, "cpu") == speedups.DEFAULTS["cpu"]
    assert speedups.parse("default", "cuda:1") == speedups.DEFAULTS["cuda"]
    assert speedups.parse("none", "cpu") == ()
    assert speedups.parse("channels_last+bf16_autocast", "cpu") == ("channels_last",
                                                                    "bf16_autocast")
    assert speedups.parse("bf16_autocast,cpu_workers", "cpu") == ("bf16_autocast", "cpu_workers")
    with pytest.raises(ValueError, match="unknown speed-up bf16"):
        speedups.parse("bf16", "cpu")


@pytest.fixture()
def figures():
    from pathlib import Path

    from pipeline import spec

    return spec.load(Path(__file__).resolve().parents[1] / "figures.toml")


@pytest.fixture()
def model_json(preview_model_dir, tmp_path):
    from pipeline import model

    model.prepare(str(preview_model_dir), tmp_path / "model.json")
    return str(tmp_path / "model.json")


@pytest.mark.parametrize("arg, names, layout, autocast, threads", [
    ("none", [], "contiguous_format", None, "all"),
    # named, not "default": on a CPU without bf16 instructions the default leaves autocast out
    ("channels_last+bf16_autocast+cpu_workers", ["channels_last", "bf16_autocast", "cpu_workers"],
     "channels_last", "bfloat16", 1),
])
def test_the_cpu_paths_are_in_the_provenance_and_the_cache_key(model_json, figures, arg, names,
                                                               layout, autocast, threads):
    from pipeline import model, sampling

    comps = model.load(model_json, "cpu", arg)
    assert list(comps.speedups) == names
    prov = sampling.provenance(figures, figures.all_generations()[0], comps)
    assert prov["speedups"] == names and prov["layout"] == layout
    assert prov["autocast"] == autocast and prov["dtype"] == "float32"
    assert prov["cpu_threads"] == (torch.get_num_threads() if threads == "all" else threads)
    assert comps.vae.decoder.conv_in.weight.is_contiguous()  # decodes stay fp32, contiguous
    other = model.load(model_json, "cpu", "none" if arg != "none" else "default")
    assert sampling.cache_key(prov) != sampling.cache_key(
        sampling.provenance(figures, figures.all_generations()[0], other))


def test_a_bad_speedups_argument_is_one_line_naming_the_known_ones(model_json):
    from pipeline import model

    with pytest.raises(model.ModelError, match="speedups=fast: unknown speed-up fast; known:"):
        model.load(model_json, "cpu", "fast")


def test_bf16_autocast_stays_within_bf16_rounding_and_keeps_the_weights(preview_model_dir):
    from diffusers import UNet2DConditionModel

    plain = run(UNet2DConditionModel.from_pretrained(preview_model_dir / "unet").eval())
    fast = speedups.apply(UNet2DConditionModel.from_pretrained(preview_model_dir / "unet").eval(),
                          ["bf16_autocast"])
    out = run(fast)
    assert out.dtype == torch.bfloat16  # it did run in bf16
    rel = ((out.float() - plain).norm() / plain.norm()).item()
    assert 1e-4 < rel < 2e-2, rel  # bf16 has 8 bits of mantissa: ~0.4% a rounding
    assert next(fast.parameters()).dtype == torch.float32


def test_a_deep_copy_of_an_autocast_unet_runs_its_own_weights(preview_model_dir):
    """The CPU workers each run a deepcopy: the copy's forward must be bound to the copy."""
    import copy

    from diffusers import UNet2DConditionModel

    unet = speedups.apply(UNet2DConditionModel.from_pretrained(preview_model_dir / "unet").eval(),
                          ["bf16_autocast"])
    twin = copy.deepcopy(unet)
    before = run(unet)
    with torch.no_grad():
        twin.conv_out.bias.add_(1.0)  # changes the copy only
    assert torch.equal(run(unet), before)
    assert run(twin).float().mean() > before.float().mean() + 0.5


def test_cpu_workers_give_the_same_bytes_however_the_generations_are_grouped(model_json,
                                                                             figures):
    """Each worker samples on one thread: a generation's latents are the same whether it is
    sampled alone, among others in parallel, or again, and each worker's variant stays its own
    (two variants sampled at once give what each gives alone)."""
    from pipeline import model, sampling
    from pipeline.spec import Generation

    comps = model.load(model_json, "cpu", "default")
    gens = [Generation("miko", 11, 128, 128), Generation("blonde", 12, 128, 128),
            Generation("miko", 11, 128, 128, "logit-scale"), Generation("miko", 13, 128, 128)]

    def sample(chosen):
        out = {}
        sampling.sample_generations(comps, figures, chosen, "auto",
                                    lambda chunk, zs: out.update(zip(chunk, zs)))
        return out

    together = sample(gens)
    assert set(together) == set(gens)
    threads = torch.get_num_threads()
    for g in gens[:3]:
        assert torch.equal(sample([g])[g], together[g]), g
    assert torch.get_num_threads() == threads  # the main thread's setting is restored
    assert sampling.cpu_workers(comps) >= 1
    assert not torch.equal(together[gens[0]], together[gens[2]])  # the variant did apply


def test_a_compiled_fused_unet_computes_what_the_plain_unet_computes(preview_model_dir):
    """torch.compile runs on the CPU too (Inductor's C++ backend): the compiled graph of a
    fused-QKV UNet gives the plain UNet's output (about 20-45 s of compiling)."""
    from diffusers import UNet2DConditionModel

    plain = run(UNet2DConditionModel.from_pretrained(preview_model_dir / "unet").eval())
    fast = speedups.apply(UNet2DConditionModel.from_pretrained(preview_model_dir / "unet").eval(),
                          ["fused_qkv", "compiled"])
    try:
        torch.testing.assert_close(run(fast), plain, rtol=1e-4, atol=1e-5)
    finally:
        torch._dynamo.reset()
