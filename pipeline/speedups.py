"""Speed-ups for the UNet on a GPU, each one on its own so a benchmark can measure each alone.

Every speed-up has one signature, `speedup(unet) -> unet`: it changes the module in place where
it can and returns what the sampler should call (torch.compile returns a wrapper around it).
`apply(unet, names)` applies a list of them in order. The pipeline applies DEFAULT on CUDA and
nothing on the CPU; `benchmarks/unet_speedups.py` measures each against plain diffusers modules
through this same code, so what is measured is what the pipeline runs.

None of them changes what the UNet computes beyond fp16 rounding order (fused projections sum
the same products in one matmul; compiled kernels fuse elementwise work), and each is recorded in
every image's provenance, so latents made with one set are never reused for another.
"""
from __future__ import annotations

import torch


def channels_last(unet):
    """NHWC memory layout for the convolutions (cuDNN's tensor-core kernels prefer it)."""
    return unet.to(memory_format=torch.channels_last)


def cudnn_benchmark(unet):
    """Let cuDNN time its convolution algorithms once per input shape and keep the fastest.
    A process-wide switch: it costs a few calls per new shape, and the article has three."""
    torch.backends.cudnn.benchmark = True
    return unet


def fused_qkv(unet):
    """One matmul for each self-attention's query, key and value projections (and one for each
    cross-attention's key and value) instead of three (two). The separate weights stay, so the
    attention variants, which call them one by one, still work."""
    unet.fuse_qkv_projections()
    return unet


def compiled(unet):
    """torch.compile with static shapes: one graph per input shape, compiled on its first call."""
    return torch.compile(unet, dynamic=False)


def compiled_autotune(unet):
    """torch.compile in "max-autotune-no-cudagraphs" mode: Inductor also times Triton templates
    for the matmuls and convolutions against cuBLAS/cuDNN and keeps the fastest (a long compile)."""
    return torch.compile(unet, mode="max-autotune-no-cudagraphs", dynamic=False)


def compiled_graphs(unet):
    """torch.compile in "reduce-overhead" mode: the compiled graph also runs as a CUDA graph, so
    a whole UNet call is one launch from Python."""
    return torch.compile(unet, mode="reduce-overhead", dynamic=False)


SPEEDUPS = {"channels_last": channels_last, "cudnn_benchmark": cudnn_benchmark,
            "fused_qkv": fused_qkv, "compiled": compiled, "compiled_autotune": compiled_autotune,
            "compiled_graphs": compiled_graphs}
COMPILERS = ("compiled", "compiled_autotune", "compiled_graphs")

# What the pipeline applies on CUDA; changed only by what benchmarks/unet_speedups.py measures.
DEFAULT = ("channels_last",)


def check(names) -> tuple[str, ...]:
    """The names, checked: an unknown one is an error naming the known ones."""
    names = tuple(n for n in names if n)
    unknown = [n for n in names if n not in SPEEDUPS]
    if unknown:
        raise ValueError(f"unknown speed-up {', '.join(unknown)}; known: {', '.join(SPEEDUPS)}")
    if len(set(names) & set(COMPILERS)) > 1:
        raise ValueError(f"{', '.join(n for n in names if n in COMPILERS)} are ways to compile "
                         f"the same module: give one")
    return names


def apply(unet, names):
    """Apply the named speed-ups in order; returns the module to call."""
    for name in check(names):
        unet = SPEEDUPS[name](unet)
    return unet
