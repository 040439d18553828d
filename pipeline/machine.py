"""The machine a build runs on: what kind of CPU (or GPU) it is, and the UNet speed-ups that pay
on it.

`speedups.DEFAULTS["cpu"]` runs the UNet under bf16 autocast, which pays where the CPU computes
bf16 natively (AVX-512 BF16 or AMX). Elsewhere oneDNN emulates bf16 and a UNet call is slower
than in fp32: 1.56 s against 0.256 s at 512x512 on an AMD EPYC with AVX2 only
(benchmarks/results/cpu_path-calls-preview-cpu-avx2.json), so there the default leaves bf16
autocast out. Which set a build used is in its cache keys, provenance and frozen-evaluation key,
so choosing here changes no image's record silently. Pure Python (dodo.py reads it at load time).
"""
from __future__ import annotations

from pathlib import Path

from . import speedups as speedupsmod

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo's names for native bf16 arithmetic
CPU_WITHOUT_BF16 = tuple(n for n in speedupsmod.DEFAULTS["cpu"] if n != "bf16_autocast")


def cpu_fields() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where there is none)."""
    info = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in (info.read_text() if info.exists() else "").splitlines():
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return fields


def bf16_flags(fields: dict[str, str] | None = None) -> list[str]:
    """The CPU's native bf16 instruction sets, as /proc/cpuinfo names them."""
    flags = set((cpu_fields() if fields is None else fields).get("flags", "").split())
    return sorted(flags & set(BF16_FLAGS))


def describe(device: str) -> str:
    """The kind of machine that computes on `device` ("cpu", "cuda", "cuda:N"), in words: on the
    CPU its model name, vendor, family and model numbers and bf16 instruction sets (oneDNN picks
    its bf16 kernels by them); on CUDA the GPU's name."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device if ":" in device else 0)
    fields = cpu_fields()
    if not fields:
        import platform

        return f"{platform.machine()} {platform.processor()}".strip() or "unknown CPU"
    return (f"{fields.get('model name', 'unknown CPU')} ({fields.get('vendor_id', '?')} family "
            f"{fields.get('cpu family', '?')} model {fields.get('model', '?')}; "
            f"{', '.join(bf16_flags(fields)) or 'no bf16 instructions'})")


def speedups(arg: str | None, device_type: str) -> tuple[str, ...]:
    """The speed-ups a `speedups=` argument names on this machine: as `speedups.parse`, except
    that "default" on a CPU without bf16 instructions leaves bf16 autocast out."""
    names = speedupsmod.parse(arg, device_type)
    if (arg or "default").strip() == "default" and device_type == "cpu" and not bf16_flags():
        return CPU_WITHOUT_BF16
    return names


def speedups_arg(names: tuple[str, ...]) -> str:
    """The `speedups=` argument that names exactly `names` (what dodo.py hands its tasks)."""
    return "+".join(names) or speedupsmod.NONE
