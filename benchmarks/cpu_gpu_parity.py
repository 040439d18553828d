"""Does the GPU compute what the CPU computes? (prints figures; needs CUDA)

    python benchmarks/cpu_gpu_parity.py [--shapes preview,sd15] [--sizes 256,512]

For each model shape, one generation (miko, seed 715317074) per size is sampled with the
article's sampler on the CPU (fp32) and on the GPU (fp16 weights, fp32 sampler arithmetic) from the
same seed, and twice on the GPU. Prints and writes (JSON + CSV under benchmarks/results/) the
latents' relative difference ||gpu - cpu|| / ||cpu||, the largest absolute difference, and whether
the two GPU runs gave identical bytes.
"""
from __future__ import annotations

import argparse
import time

import torch
from common import ROOT, build_and_load, write_results

from pipeline import model, sampling, spec as specmod


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="preview,sd15")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    spec = specmod.load(ROOT / "figures.toml")
    rows = []
    for shape in args.shapes.split(","):
        gpu_comps, directory, _ = build_and_load(shape, "cuda")
        cpu_comps = model.load(str(directory.parent / "model.json"), "cpu")
        for size in (int(s) for s in args.sizes.split(",")):
            gen = specmod.Generation("miko", 715317074, size, size)
            got = []
            for comps in (cpu_comps, gpu_comps, gpu_comps):
                t = time.perf_counter()
                got.append(sampling.sample(comps, spec, [gen]))
                print(f"{shape} {size} {comps.device}: {time.perf_counter() - t:.2f} s", flush=True)
            cpu, gpu, again = got
            rows.append({"shape": shape, "size": size,
                         "relative_difference": float(f"{relative_difference(gpu, cpu):.3g}"),
                         "max_abs_difference": float(f"{(gpu - cpu).abs().max():.3g}"),
                         "latent_std": float(f"{cpu.std():.3g}"),
                         "gpu_rerun_identical": bool(torch.equal(gpu, again))})
            print(rows[-1], flush=True)
        model.load.cache_clear()
        del gpu_comps, cpu_comps
    write_results(args.out, "cpu_gpu_parity", {"device": torch.cuda.get_device_name()}, rows)


if __name__ == "__main__":
    main()
