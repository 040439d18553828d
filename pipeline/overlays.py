"""Overlays drawn on finished images. Each shares the signature `overlay(image, geometry) -> image`
where `geometry` comes from the model's config (pipeline/geometry.py)."""
from __future__ import annotations

from PIL import Image, ImageDraw

MAGENTA = "#FF00FF"
STROKE = 8


def kernel_footprint(image: Image.Image, geometry: dict) -> Image.Image:
    """Outline, at the top-left, the pixels one 3x3 kernel at the UNet's deepest level covers:
    3 x deepest stride x VAE factor on a side (192 px for SD 1.5)."""
    side = geometry["kernel_footprint_px"]
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    draw.rectangle([0, 0, side - 1, side - 1], outline=MAGENTA, width=STROKE)
    return out


OVERLAYS = {"kernel_footprint": kernel_footprint}
