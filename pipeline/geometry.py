"""Geometry read from the model's own config files: no constant about SD 1.5 is typed in here.

Pure Python (reads JSON only), so emission and dodo.py can use it without loading weights.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

KERNEL = 3  # the UNet's resnet convolutions are 3x3


def _conv_out(n: int) -> int:
    """Spatial size after a stride-2, 3x3, padding-1 convolution (diffusers' Downsample2D)."""
    return (n + 2 - 3) // 2 + 1


def vae_factor(vae: dict) -> int:
    """Pixels per latent position on a side: every VAE block but the last halves the image."""
    return 2 ** (len(vae["block_out_channels"]) - 1)


def from_configs(unet: dict, vae: dict) -> dict:
    factor = vae_factor(vae)
    levels = len(unet["down_block_types"])
    deepest_stride = 2 ** (levels - 1)  # every down block but the last halves the resolution
    self_attn_levels = [i for i, b in enumerate(unet["down_block_types"]) if "Attn" in b]
    if "Attn" in (unet.get("mid_block_type") or "UNetMidBlock2DCrossAttn"):  # diffusers' default
        self_attn_levels.append(levels - 1)
    return {
        "vae_factor": factor,
        "latent_channels": unet["in_channels"],
        "unet_levels": levels,
        "deepest_stride": deepest_stride,
        "attention_levels": self_attn_levels,
        "train_size": unet["sample_size"] * factor,
        "train_latent": unet["sample_size"],
        "kernel": KERNEL,
        "kernel_footprint_px": KERNEL * deepest_stride * factor,
        "vae_scaling_factor": vae.get("scaling_factor"),
        "cross_attention_dim": unet.get("cross_attention_dim"),
    }


def load(model_dir: str | Path) -> dict:
    model_dir = Path(model_dir)
    unet = json.loads((model_dir / "unet" / "config.json").read_text())
    vae = json.loads((model_dir / "vae" / "config.json").read_text())
    return from_configs(unet, vae)


def level_sizes(geom: dict, width: int, height: int) -> list[tuple[int, int]]:
    """Latent (w, h) at each UNet level, from the top (latent) to the deepest."""
    w, h = width // geom["vae_factor"], height // geom["vae_factor"]
    out = [(w, h)]
    for _ in range(geom["unet_levels"] - 1):
        w, h = _conv_out(w), _conv_out(h)
        out.append((w, h))
    return out


def logit_factor(n: int, n_train: int) -> float:
    """Logit scaling's entropy-preserving multiplier on the softmax scale for a layer with n keys
    that had n_train at the trained size: sqrt(log n / log n_train)."""
    return math.sqrt(math.log(n) / math.log(n_train))


def key_counts(geom: dict, width: int, height: int) -> list[int]:
    """Self-attention key count (tokens) at each UNet level for an image of this size."""
    return [w * h for w, h in level_sizes(geom, width, height)]


def same_as_usual(geometry: dict, variant: str, width: int, height: int) -> bool:
    """Whether `variant` is exactly the model's own attention for width x height images: the
    top-k rules when no self-attention layer has more keys than at the trained size, logit
    scaling when every layer has exactly as many (its factor is then 1)."""
    if variant == "usual":
        return True
    counts = key_counts(geometry, width, height)
    trained = key_counts(geometry, geometry["train_size"], geometry["train_size"])
    levels = geometry["attention_levels"]
    if variant == "logit-scale":
        return all(counts[lv] == trained[lv] for lv in levels)
    return all(counts[lv] <= trained[lv] for lv in levels)
