"""The fp16 CUDA path, end to end, on a GPU (not a test; prints figures).

    python benchmarks/gpu_path.py [--shapes preview,sd15]

For each model shape (the preview model, and a random model of SD 1.5's exact architecture, whose
timings are the real model's), builds it, loads it through pipeline.model (fp16 on CUDA), samples
the hero figure's generations (miko, seed 715317074 at 200, 256, 512, 768) one at a time with the
article's sampler settings, twice each, and prints: seconds per image, UNet calls per second
(one call = the CFG pair), peak GPU memory, whether the two runs gave identical bytes, and the
VAE decode time.
"""
from __future__ import annotations

import argparse
import time

import torch
from common import ROOT, build_and_load

from pipeline import decode, files, model, sampling, spec as specmod


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="preview,sd15")
    args = ap.parse_args()
    assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    spec = specmod.load(ROOT / "figures.toml")
    hero = spec.figure("hero").cells
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'shape':8s} {'size':>9s} {'s/image':>8s} {'unet it/s':>9s} {'peak GiB':>9s} "
          f"{'same bytes':>10s} {'vae s':>6s}")
    for shape in args.shapes.split(","):
        comps, _, built = build_and_load(shape, "cuda")
        assert comps.dtype == torch.float16
        print(f"# {shape}: built in {built:.1f} s, "
              f"UNet {sum(p.numel() for p in comps.unet.parameters()) / 1e6:.0f} M params")
        sampling.sample(comps, spec, [hero[0]])  # warm-up (kernels, cuDNN autotuning)
        for gen in hero:
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
            t = time.perf_counter()
            first = sampling.sample(comps, spec, [gen])
            torch.cuda.synchronize()
            dt = time.perf_counter() - t
            second = sampling.sample(comps, spec, [gen])
            peak = torch.cuda.max_memory_allocated() / 2**30
            t = time.perf_counter()
            img = decode.vae(first, comps.vae)
            torch.cuda.synchronize()
            vae_s = time.perf_counter() - t
            assert torch.isfinite(first).all() and torch.isfinite(img).all()
            same = files.png_bytes(decode.to_pil(img[0])) == files.png_bytes(
                decode.to_pil(decode.vae(second, comps.vae)[0]))
            print(f"{shape:8s} {gen.size_key:>9s} {dt:8.3f} {spec.sampling['steps'] / dt:9.1f} "
                  f"{peak:9.2f} {str(same and torch.equal(first, second)):>10s} {vae_s:6.3f}")
        model.load.cache_clear()
        del comps
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
