"""Does torch.compile pay for the UNet at the article's batch shapes? (prints figures)

    python benchmarks/unet_compile.py --sizes 512,768 --gens 8

On a random SD 1.5-architecture UNet (fp16, channels-last, CUDA): seconds per forward on the CFG
pair of `--gens` generations, eager against torch.compile (default mode), after warm-up, plus
the one-off compile time, side by side in one process. The pipeline compiles only if this shows
that the saving over a figure run exceeds the compile time.
"""
from __future__ import annotations

import argparse
import time

import torch
from common import build_and_load


def timed(fn, repeats: int) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="512,768")
    ap.add_argument("--gens", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    comps, _, _ = build_and_load("sd15", "cuda")
    g = comps.info["geometry"]
    compiled = torch.compile(comps.unet)
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, CFG pair of {args.gens}")
    print(f"{'size':>6s} {'eager s':>9s} {'compiled s':>11s} {'speed-up':>9s} {'compile s':>10s}")
    for size in map(int, args.sizes.split(",")):
        side = size // g["vae_factor"]
        x = torch.randn(2 * args.gens, 4, side, side, device="cuda", dtype=comps.dtype)
        x = x.to(memory_format=comps.memory_format)
        ctx = torch.randn(2 * args.gens, 77, g["cross_attention_dim"], device="cuda",
                          dtype=comps.dtype)
        t = torch.tensor(500.0, device="cuda")
        with torch.no_grad():
            eager = lambda: comps.unet(x, t, encoder_hidden_states=ctx)  # noqa: E731
            comp = lambda: compiled(x, t, encoder_hidden_states=ctx)  # noqa: E731
            eager()
            e = timed(eager, args.repeats)
            torch.cuda.synchronize()
            start = time.perf_counter()
            comp()
            torch.cuda.synchronize()
            ctime = time.perf_counter() - start
            c = timed(comp, args.repeats)
        print(f"{size:6d} {e:9.4f} {c:11.4f} {e / c:8.2f}x {ctime:10.1f}")


if __name__ == "__main__":
    main()
