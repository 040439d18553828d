"""Speed-ups for the UNet, each one on its own so a benchmark can measure each alone.

Every speed-up has one signature, `speedup(unet) -> unet`: it changes the module in place where
it can and returns what the sampler should call (torch.compile returns a wrapper around it).
`apply(unet, names)` applies a list of them in order. The pipeline applies DEFAULTS[device type]
unless told otherwise (`doit speedups=...`); `benchmarks/unet_speedups.py` (GPU) and
`benchmarks/cpu_path.py` (CPU) measure them against plain diffusers modules through this same
code, so what is measured is what the pipeline runs.

On a GPU none of them changes what the UNet computes beyond fp16 rounding order (fused
projections sum the same products in one matmul; compiled kernels fuse elementwise work). On the
CPU `bf16_autocast` runs the UNet's convolutions and matmuls in bfloat16 (the sampler's own
arithmetic stays fp32); `benchmarks/cpu_path.py` checks that the images still say the same
thing. Each name is recorded in every image's provenance and cache key, so latents made with
one set are never reused for another.
"""
from __future__ import annotations

from . import machine


def channels_last(unet):
    """NHWC memory layout for the convolutions (cuDNN's tensor-core kernels prefer it)."""
    import torch

    return unet.to(memory_format=torch.channels_last)


def bf16_autocast(unet):
    """Run every UNet call under bfloat16 autocast: convolutions, matmuls and attention in bf16
    (oneDNN's AVX-512 BF16 / AMX kernels on the CPU), normalisations and softmax statistics in
    fp32 as autocast keeps them. The weights stay fp32; the sampler casts the output back. The
    module is changed in place (its forward is bound to a wrapper, which a deepcopy rebinds to
    the copy), so attention variants and probes install on it as on the plain one."""
    import types

    unet.forward = types.MethodType(_autocast_forward, unet)
    return unet


def _autocast_forward(self, *args, **kwargs):
    import torch

    with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
        return type(self).forward(self, *args, **kwargs)


def cpu_workers(unet):
    """Not a change to the module: tells the sampler to run one generation per core, each on one
    thread with its own copy of the UNet (pipeline/sampling.py, sample_generations), instead of
    one generation at a time on every thread. Listed here so that it is chosen, measured and
    recorded like the others."""
    return unet


def cudnn_benchmark(unet):
    """Let cuDNN time its convolution algorithms once per input shape and keep the fastest.
    A process-wide switch: it costs a few calls per new shape, and the article has three."""
    import torch

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
    import torch

    return torch.compile(unet, dynamic=False)


def compiled_autotune(unet):
    """torch.compile in "max-autotune-no-cudagraphs" mode: Inductor also times Triton templates
    for the matmuls and convolutions against cuBLAS/cuDNN and keeps the fastest (a long compile)."""
    import torch

    return torch.compile(unet, mode="max-autotune-no-cudagraphs", dynamic=False)


def compiled_graphs(unet):
    """torch.compile in "reduce-overhead" mode: the compiled graph also runs as a CUDA graph, so
    a whole UNet call is one launch from Python."""
    import torch

    return torch.compile(unet, mode="reduce-overhead", dynamic=False)


SPEEDUPS = {"channels_last": channels_last, "bf16_autocast": bf16_autocast,
            "cpu_workers": cpu_workers, "cudnn_benchmark": cudnn_benchmark,
            "fused_qkv": fused_qkv, "compiled": compiled, "compiled_autotune": compiled_autotune,
            "compiled_graphs": compiled_graphs}
COMPILERS = ("compiled", "compiled_autotune", "compiled_graphs")

# What the pipeline applies per device type; changed only by what the benchmarks measure:
# CUDA by benchmarks/unet_speedups.py, the CPU by benchmarks/cpu_path.py.
DEFAULTS = {"cuda": ("channels_last",),
            "cpu": ("channels_last", "bf16_autocast", "cpu_workers")}
# The CPU default where the CPU has no native bf16 arithmetic (machine.bf16_flags): there oneDNN
# emulates bf16 and a UNet call is slower than in fp32, 1.56 s against 0.256 s at 512x512 on an
# AMD EPYC with AVX2 only (benchmarks/results/cpu_path-calls-preview-cpu-avx2.json).
CPU_WITHOUT_BF16 = ("channels_last", "cpu_workers")
NONE = "none"  # `speedups=none`: the plain modules as loaded (fp32 on the CPU, fp16 on CUDA)


def parse(arg: str | None, device: str) -> tuple[str, ...]:
    """The speed-ups a `speedups=` argument names for `device`: "default" (or nothing) is
    DEFAULTS for its type (on a CPU without bf16 instructions, CPU_WITHOUT_BF16), "none" is
    none, anything else names joined by "+" or ","."""
    arg = (arg or "default").strip()
    if arg == "default":
        if device.startswith("cuda"):
            return DEFAULTS["cuda"]
        return DEFAULTS["cpu"] if machine.bf16_flags() else CPU_WITHOUT_BF16
    if arg == NONE:
        return ()
    return check(arg.replace(",", "+").split("+"))


def arg(names) -> str:
    """The `speedups=` argument that names exactly `names` (what dodo.py hands its tasks)."""
    return "+".join(names) or NONE


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
