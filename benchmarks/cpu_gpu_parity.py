"""Does the GPU compute what the CPU computes? (prints figures; needs CUDA)

    python benchmarks/cpu_gpu_parity.py [--shapes preview,sd15] [--sizes 256,512]

For each model shape, one generation (miko, seed 715317074) per size is sampled with the
article's sampler on the CPU (fp32) and on the GPU (fp16 weights, fp32 sampler arithmetic) from the
same seed, and twice on the GPU. Prints and writes under benchmarks/results/ (JSON + CSV, one
pair per shape: cpu_gpu_parity-<shape>-cuda) the latents' relative difference
||gpu - cpu|| / ||cpu||, the largest absolute difference, and whether the two GPU runs gave
identical bytes. A shape's file is written again after each of its rows, so a run cut off at its
limit (benchmarks/gpu_run.py) keeps the rows it finished.

The CPU side is loaded with CPU_REFERENCE, not the CPU default: on a CPU with bf16 instructions
(a GPU machine's host may have them) the default runs the UNet in bf16, and its cpu_workers put
a lone generation on one thread, which for SD 1.5's UNet would take minutes. `--device cpu`
puts the CPU's default path on the side under test instead of the GPU (the CPU test of this
script; its files are tagged -cpu).
"""
from __future__ import annotations

import argparse
import time

import torch
from common import ROOT, build_and_load, write_results

from pipeline import model, sampling, spec as specmod

CPU_REFERENCE = "none"  # speed-ups of the CPU side: the modules as loaded, fp32, every thread


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="preview,sd15")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--device", default="cuda", help="the side compared with the CPU reference")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    on_gpu = args.device.startswith("cuda")
    assert torch.cuda.is_available() or not on_gpu, "this benchmark needs a CUDA GPU"
    spec = specmod.load(ROOT / "figures.toml")
    for shape in args.shapes.split(","):
        tested, directory, _ = build_and_load(shape, args.device)
        reference = model.load(str(directory.parent / "model.json"), "cpu", CPU_REFERENCE)
        context = {"device": torch.cuda.get_device_name() if on_gpu else "cpu (its default path)",
                   "shape": shape, "cpu_speedups": CPU_REFERENCE,
                   "cpu_threads": torch.get_num_threads()}
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            gen = specmod.Generation("miko", 715317074, size, size)
            got = []
            for comps in (reference, tested, tested):
                t = time.perf_counter()
                got.append(sampling.sample(comps, spec, [gen]))
                print(f"{shape} {size} {comps.device} ({'+'.join(comps.speedups) or 'none'}): "
                      f"{time.perf_counter() - t:.2f} s", flush=True)
            cpu, other, again = got
            rows.append({"shape": shape, "size": size,
                         "relative_difference": float(f"{relative_difference(other, cpu):.3g}"),
                         "max_abs_difference": float(f"{(other - cpu).abs().max():.3g}"),
                         "latent_std": float(f"{cpu.std():.3g}"),
                         "gpu_rerun_identical": bool(torch.equal(other, again))})
            print(rows[-1], flush=True)
            write_results(args.out, "cpu_gpu_parity", context, rows,
                          tag=f"{shape}-{'cuda' if on_gpu else 'cpu'}")
        model.load.cache_clear()
        del tested, reference


if __name__ == "__main__":
    main()
