"""The UNet speed-ups (pipeline/speedups.py): what a CPU can check of a path meant for CUDA —
each computes what the plain UNet computes, the attention variants and the probe still install
on a sped-up UNet, bad names fail clearly, and the CPU path applies none of them."""
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
    assert speedups.check(speedups.DEFAULT) == speedups.DEFAULT


def test_the_cpu_path_applies_no_speedup_and_the_provenance_says_so(preview_model_dir, tmp_path):
    from pathlib import Path

    from pipeline import model, sampling, spec

    model.prepare(str(preview_model_dir), tmp_path / "model.json")
    comps = model.load(str(tmp_path / "model.json"), "cpu")
    assert comps.speedups == () and comps.memory_format == torch.contiguous_format
    figures = spec.load(Path(__file__).resolve().parents[1] / "figures.toml")
    prov = sampling.provenance(figures, figures.all_generations()[0], comps)
    assert prov["speedups"] == [] and prov["layout"] == "contiguous_format"


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
