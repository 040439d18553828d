"""Overlays drawn on finished images. Each shares the signature
`overlay(image, geometry, centre) -> image`, where `geometry` comes from the model's config
(pipeline/geometry.py) and `centre` is the (x, y) pixel the overlay is drawn around: the subject
(see images.subject_centre)."""
from __future__ import annotations

from PIL import Image, ImageDraw

MAGENTA = "#FF00FF"
STROKE = 8


def kernel_footprint(image: Image.Image, geometry: dict, centre: tuple[int, int]) -> Image.Image:
    """Outline, around `centre` (kept inside the image), the pixels one 3x3 kernel at the UNet's
    deepest level covers: 3 x deepest stride x VAE factor on a side (192 px for SD 1.5)."""
    side = geometry["kernel_footprint_px"]
    out = image.convert("RGB")
    x0 = min(max(centre[0] - side // 2, 0), max(out.width - side, 0))
    y0 = min(max(centre[1] - side // 2, 0), max(out.height - side, 0))
    draw = ImageDraw.Draw(out)
    draw.rectangle([x0, y0, x0 + side - 1, y0 + side - 1], outline=MAGENTA, width=STROKE)
    return out


OVERLAYS = {"kernel_footprint": kernel_footprint}
