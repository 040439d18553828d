"""The GPU computes what the CPU computes (runs only where CUDA exists; the GPU session's
benchmarks/gpu_run.sh runs it). Measured on an H100: relative difference of the latents after
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
    cpu = sampling.sample(model.load(str(tmp_path / "model.json"), "cpu"), spec, [gen])
    gpu_comps = model.load(str(tmp_path / "model.json"), "cuda")
    assert gpu_comps.dtype == torch.float16
    gpu = sampling.sample(gpu_comps, spec, [gen])
    again = sampling.sample(gpu_comps, spec, [gen])
    assert float((gpu - cpu).norm() / cpu.norm()) < 1e-2
    assert torch.equal(gpu, again)
