"""Each UNet speed-up of pipeline/speedups.py on its own, and combinations (prints figures).

    python benchmarks/unet_speedups.py                       # GPU: SD 1.5's architecture, eager
    python benchmarks/unet_speedups.py --configs compiled --sizes 512,768   # the compiled ones
    python benchmarks/unet_speedups.py --configs plain,fused_qkv,channels_last+compiled
    python benchmarks/unet_speedups.py --shape preview --device cpu --sizes 64 --gens 1   # harness

For every configuration (speed-up names joined by "+"; "plain" is none), a freshly loaded UNet
(fp16 on CUDA, as diffusers loads it) gets those speed-ups through `speedups.apply`, the very
code the pipeline runs, and is timed on the CFG pair of `--gens` generations at each size, the
UNet batch the article's sampler sends: the first call (where compilation and cuDNN's
algorithm search happen) on its own, then the mean of `--repeats` calls after a warm-up. Each
row also gives the speed-up over "plain" at that size, the achieved TFLOP/s and fraction of the
dense fp16 peak (FLOPs counted with FlopCounterMode), peak memory, and the output's relative
difference from "plain" on the same inputs (what the speed-up does to the numbers), and how many
calls at that size the article's workload makes, so the compile time can be set against what it
saves. Configurations run in the order given, "plain" first; the process-wide switches (cuDNN's
benchmark mode, dynamo's caches) are reset before each. Writes JSON + CSV under
benchmarks/results/.
"""
from __future__ import annotations

import argparse
import time

import torch
from common import ROOT, build_and_load, peak_tflops, share, sync, unet_flops, write_results

from pipeline import speedups

EAGER = "plain,channels_last,cudnn_benchmark,fused_qkv,channels_last+cudnn_benchmark+fused_qkv"
COMPILED = ("plain,compiled,compiled_graphs,fused_qkv+compiled_graphs,"
            "channels_last+cudnn_benchmark+fused_qkv+compiled_graphs,compiled_autotune")
SETS = {"eager": EAGER, "compiled": COMPILED}  # each fits one 10-minute device call


def parse(config: str) -> tuple[str, ...]:
    return () if config == "plain" else speedups.check(config.split("+"))


def fresh_unet(directory, device: str):
    from diffusers import UNet2DConditionModel

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    unet = UNet2DConditionModel.from_pretrained(directory / "unet", torch_dtype=dtype)
    return unet.to(device).eval().requires_grad_(False)


def inputs(geometry: dict, size: int, batch: int, device: str, dtype, names) -> tuple:
    g = torch.Generator("cpu").manual_seed(size)
    side = size // geometry["vae_factor"]
    x = torch.randn(batch, geometry["latent_channels"], side, side, generator=g)
    ctx = torch.randn(batch, 77, geometry["cross_attention_dim"], generator=g)
    fmt = torch.channels_last if "channels_last" in names else torch.contiguous_format
    x = x.to(device, dtype).to(memory_format=fmt)
    return x, torch.tensor(500.0, device=device), ctx.to(device, dtype)


def reset(device: str) -> None:
    torch.backends.cudnn.benchmark = False
    torch._dynamo.reset()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


@torch.no_grad()
def measure(unet, args_, repeats: int, device: str) -> tuple[float, float, torch.Tensor]:
    """(first call's seconds, mean seconds per call after warm-up, output of the first call)."""
    x, t, ctx = args_
    sync(device)
    start = time.perf_counter()
    out = unet(x, t, encoder_hidden_states=ctx).sample.float().clone()
    sync(device)
    first = time.perf_counter() - start
    for _ in range(2):  # warm-up (reduce-overhead records its CUDA graph on a later call)
        unet(x, t, encoder_hidden_states=ctx)
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        unet(x, t, encoder_hidden_states=ctx)
    sync(device)
    return first, (time.perf_counter() - start) / repeats, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="sd15", choices=["preview", "sd15"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", default="256,512,768")
    ap.add_argument("--gens", type=int, default=8, help="generations per batch (UNet batch 2x)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--configs", default="eager",
                    help=f"a set ({', '.join(SETS)}) or names joined by + and separated by commas")
    ap.add_argument("--calls-per-size", type=int, default=22,
                    help="UNet calls the article's workload makes per size and batch (its steps)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    configs = [c.strip() for c in SETS.get(args.configs, args.configs).split(",") if c.strip()]
    configs = ["plain"] + [c for c in configs if c != "plain"]  # the reference comes first
    parsed = {c: parse(c) for c in configs}  # a misspelt name fails before anything loads
    comps, directory, _ = build_and_load(args.shape, args.device)
    device, geometry = comps.device, comps.info["geometry"]
    del comps
    name = (torch.cuda.get_device_name(device) if device.startswith("cuda")
            else f"cpu ({torch.get_num_threads()} threads)")
    peak = peak_tflops(name)
    sizes = [int(s) for s in args.sizes.split(",")]
    batch = 2 * args.gens
    rows, reference = [], {}
    print(f"# {args.shape} UNet on {name}, torch {torch.__version__}, batch {batch} "
          f"(CFG pair of {args.gens})")
    cols = ["config", "size", "first_call_s", "seconds_per_call", "vs_plain", "tflops",
            "fraction_of_peak", "rel_diff_vs_plain", "peak_gib"]
    print(" ".join(f"{c:>14s}" for c in cols))

    def save(rows):  # after every configuration: a run cut off by a time limit keeps them
        context = {"device": name, "shape": args.shape, "batch": batch, "repeats": args.repeats,
                   "peak_tflops_fp16_dense": peak,
                   "dtype": "float16" if device.startswith("cuda") else "float32",
                   "unet_tflop_per_sample": {s: float(f"{f / 1e12:.4g}") for s, f in flops.items()}}
        tag = f"{args.shape}-{'cuda' if device.startswith('cuda') else 'cpu'}"
        if args.configs in SETS:
            tag += f"-{args.configs}"
        return write_results(args.out, f"unet_speedups-{tag}", context, rows)

    for config in configs:
        reset(device)
        unet = fresh_unet(directory, device)
        if config == "plain":
            flops = {s: unet_flops(unet, geometry, s) for s in sizes}
        unet = speedups.apply(unet, parsed[config])
        for size in sizes:
            x = inputs(geometry, size, batch, device, next(unet.parameters()).dtype,
                       parsed[config])
            if device.startswith("cuda"):  # each size's own peak, not the config's so far
                torch.cuda.reset_peak_memory_stats()
            first, per_call, out = measure(unet, x, args.repeats, device)
            reference.setdefault(size, (per_call, out))
            base_s, base_out = reference[size]
            achieved = flops[size] * batch / per_call / 1e12
            diff = ((out - base_out).norm() / base_out.norm()).item()
            rows.append({"config": config, "size": size, "batch": batch,
                         "first_call_s": round(first, 4), "seconds_per_call": round(per_call, 5),
                         "vs_plain": round(base_s / per_call, 3),
                         "tflops": round(achieved, 2),
                         "fraction_of_peak": share(achieved, peak),
                         "rel_diff_vs_plain": float(f"{diff:.3g}"),
                         "peak_gib": (round(torch.cuda.max_memory_allocated() / 2**30, 2)
                                      if device.startswith("cuda") else None),
                         "compile_break_even_calls": (
                             round((first - per_call) / (base_s - per_call), 1)
                             if per_call < base_s else None),
                         "article_calls": args.calls_per_size})
            print(" ".join(f"{'-' if rows[-1][c] is None else rows[-1][c]!s:>14s}" for c in cols),
                  flush=True)
        del unet
        save(rows)
    print(f"-> {save(rows)}")


if __name__ == "__main__":
    main()
