"""The GPU computes what the CPU computes (runs only where CUDA exists; the GPU session's
benchmarks/gpu_run.py runs it). Measured on an H100: relative difference of the latents after
22 steps, fp16 GPU against fp32 CPU, 0.0012-0.0013 (benchmarks/results/cpu_gpu_parity-*.json);
held here to 1e-2, with a rerun on the GPU giving the same bytes."""
import pytest
import torch

from pipeline import model, sampling, spec as specmod

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gpu_fp16_latents_match_the_cpu_and_repeat_exactly(tmp_path):
    spec = specmod.load("figures.toml")
    model.prepare(model.PREVIEW, tmp_path / "model.json")
    gen = specmod.Generation("miko", 715317074, 512, 512)
    # fp32 on every thread: the CPU default would be bf16 on a host with bf16 instructions
    cpu = sampling.sample(model.load(str(tmp_path / "model.json"), "cpu", "none"), spec, [gen])
    gpu_comps = model.load(str(tmp_path / "model.json"), "cuda")
    assert gpu_comps.dtype == torch.float16
    gpu = sampling.sample(gpu_comps, spec, [gen])
    again = sampling.sample(gpu_comps, spec, [gen])
    assert float((gpu - cpu).norm() / cpu.norm()) < 1e-2
    assert torch.equal(gpu, again)


@pytest.mark.parametrize("variant", ["topk-mask", "topk-denominator"])
def test_the_triton_topk_kernels_match_the_explicit_path_on_the_gpu(variant, monkeypatch):
    """attention.attend with KERNEL on (the fused kernels) against off (the explicit blocks) at
    SD 1.5's 768x768 second level: 2,304 keys, each query keeping its 1,024 largest (the count at
    512x512), head size 40 as at its first level. The kernels round q.k to fp16 as cuBLAS does,
    but may sum in another order: a threshold may then sit one fp16 step away, in a few rows."""
    from pipeline import attention, topk_attention

    g = torch.Generator("cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 8, 2304, 40, generator=g, device="cuda").half() for _ in range(3))
    monkeypatch.setattr(attention, "KERNEL", False)
    explicit = attention.attend(q, k, v, 40 ** -0.5, variant, 1024).float()
    monkeypatch.setattr(attention, "KERNEL", True)
    fused = attention.attend(q, k, v, 40 ** -0.5, variant, 1024).float()
    assert float((fused - explicit).norm() / explicit.norm()) < 2e-3
    s16 = (q @ k.transpose(-1, -2)).float()
    kth = s16.topk(1024, dim=-1).values.amin(-1).flatten(0, 1)
    off = (topk_attention.thresholds(q, k, 1024) - topk_attention.key_of(kth).int()).abs()
    assert off.max() <= 1 and (off > 0).float().mean() < 0.01
