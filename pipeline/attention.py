"""Attention variants, selectable per generation in figures.toml.

A variant is a function `apply(unet, gen, geometry)` that installs attention processors on the
UNet's self-attention layers for one generation; every variant starts from the model's own
processors, so variants never leak from one batch into the next.
"""
from __future__ import annotations


def _restore(unet):
    original = getattr(unet, "_original_attn_processors", None)
    if original is None:
        original = dict(unet.attn_processors)
        unet._original_attn_processors = original
    unet.set_attn_processor(dict(original))
    return original


def usual(unet, gen, geometry) -> None:
    """The model's own attention (diffusers' fused scaled-dot-product processor)."""
    _restore(unet)


VARIANTS = {"usual": usual}


def apply(unet, gen, geometry) -> None:
    VARIANTS[gen.attention](unet, gen, geometry)
