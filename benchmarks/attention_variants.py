"""What each attention variant costs relative to the usual attention (not a test; prints figures).

    python benchmarks/attention_variants.py                       # CPU, the preview model
    python benchmarks/attention_variants.py --shape sd15 --device cuda --batch 8

Times one UNet forward on the CFG pair of `--batch` images at `--size` (768 by default) under
each variant, after a warm-up, side by side in one process, and prints seconds per forward, the
ratio to `usual`, and (on a GPU) peak memory. With the probe off, `usual` and `logit-scale` run
the fused kernel; the top-k variants run the blocked explicit path (pipeline/attention.py). On
the CPU the top-k variants are timed twice: with the CPU's cache-sized query blocks
(CPU_BUDGET_BYTES, what the pipeline uses) and with the GPU's large ones (BUDGET_BYTES), so the
block size's effect is measured side by side. On CUDA (where Triton is installed) the top-k
variants are also timed through the fused Triton kernels (pipeline/topk_attention.py, switched
on by attention.KERNEL), at its TILE or, with --tiles, at each of its TILES, with the UNet
output's relative difference from the explicit path's.
"""
from __future__ import annotations

import argparse
import time

import torch
from common import ROOT, build_and_load, sync, write_results

from pipeline import attention


def has_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="preview", choices=["preview", "sd15"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tiles", action="store_true",
                    help="time the Triton kernels at every tile shape of topk_attention.TILES")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    comps, _, _ = build_and_load(args.shape, args.device)
    g = comps.info["geometry"]
    dev, dt = comps.device, comps.dtype
    gen = torch.Generator("cpu").manual_seed(0)
    side = args.size // g["vae_factor"]
    x = torch.randn(2 * args.batch, g["latent_channels"], side, side, generator=gen).to(dev, dt)
    ctx = torch.randn(2 * args.batch, 77, g["cross_attention_dim"], generator=gen).to(dev, dt)
    t = torch.full((2 * args.batch,), 500, device=dev)
    name = torch.cuda.get_device_name(dev) if dev.startswith("cuda") else "cpu"
    budget = attention.block_budget(torch.device(dev))
    print(f"# {args.shape} UNet on {name} ({str(dt).removeprefix('torch.')}), "
          f"{args.size}x{args.size}, CFG pair of {args.batch}, torch {torch.__version__}, "
          f"query-block budget {budget >> 20} MiB")
    print(f"{'variant':32s} {'s/forward':>10s} {'vs usual':>9s} {'peak GiB':>9s}")
    base = None
    rows = []
    # the CPU also times the GPU's block size, by overriding the CPU's budget for those runs
    runs = [(v, v, budget, False) for v in attention.VARIANTS]
    if budget != attention.BUDGET_BYTES:
        runs += [(f"{v} ({attention.BUDGET_BYTES >> 20} MiB blocks)", v, attention.BUDGET_BYTES,
                  False) for v in attention.TOPK]
    kernels = dev.startswith("cuda") and has_triton()
    if kernels:
        from pipeline import topk_attention

        tile_used = topk_attention.TILE
        tiles = topk_attention.TILES if args.tiles else [tile_used]
        runs += [(f"{v} (Triton kernel {'x'.join(map(str, tile))})", v, budget, tile)
                 for tile in tiles for v in attention.TOPK]
    cpu_budget = attention.CPU_BUDGET_BYTES
    explicit = {}
    tag = "cuda" if dev.startswith("cuda") else "cpu"

    def save(rows):
        write_results(args.out, f"attention_variants-{args.shape}-{tag}",
                      {"device": name, "dtype": str(dt).removeprefix("torch."), "size": args.size,
                       "batch": args.batch, "repeats": args.repeats,
                       "block_budget_mib": budget >> 20}, rows)

    for label, variant, budget_used, kernel in runs:
        attention.CPU_BUDGET_BYTES = budget_used
        attention.KERNEL = bool(kernel)
        if kernel:
            topk_attention.TILE = kernel
        attention.install(comps.unet, variant, g, args.size, args.size)
        with torch.no_grad():
            out = comps.unet(x, t, encoder_hidden_states=ctx).sample.float()  # warm-up
            explicit.setdefault(variant, out)
            diff = ((out - explicit[variant]).norm() / explicit[variant].norm()).item()
            if dev.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            sync(dev)
            start = time.perf_counter()
            for _ in range(args.repeats):
                comps.unet(x, t, encoder_hidden_states=ctx)
            sync(dev)
        sec = (time.perf_counter() - start) / args.repeats
        base = base or sec
        peak = (f"{torch.cuda.max_memory_allocated() / 2**30:9.2f}" if dev.startswith("cuda")
                else f"{'-':>9s}")
        print(f"{label:32s} {sec:10.4f} {sec / base:8.2f}x {peak}"
              + (f"  output vs explicit path: {diff:.2e}" if kernel else ""))
        rows.append({"variant": label, "block_budget_mib": None if kernel else budget_used >> 20,
                     "kernel_tile": "x".join(map(str, kernel)) if kernel else None,
                     "rel_diff_vs_explicit": float(f"{diff:.3g}"),
                     "seconds_per_forward": round(sec, 5),
                     "vs_usual": round(sec / base, 2),
                     "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                     if dev.startswith("cuda") else None})
        save(rows)  # after every run: one cut off at its limit (gpu_run.py) keeps the rows so far
    attention.restore(comps.unet)
    attention.CPU_BUDGET_BYTES, attention.KERNEL = cpu_budget, False
    if kernels:
        topk_attention.TILE = tile_used


if __name__ == "__main__":
    main()
