"""The machine a build runs on: what kind of CPU (or GPU) it is, in words and in the CPU's bf16
instruction sets (which decide the CPU's default speed-ups, pipeline/speedups.py). Pure Python
(dodo.py reads it at load time through speedups.parse)."""
from __future__ import annotations

from pathlib import Path

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo's names for native bf16 arithmetic


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
