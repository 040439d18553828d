"""Image files: overlays drawn on decodes, and real downscaled thumbnails."""
from __future__ import annotations

import json

from PIL import Image

from .files import write_png


def _provenance(img: Image.Image) -> dict:
    return json.loads(img.info.get("provenance", "{}"))


def thumbnail(src: str, dst: str, width: int | str) -> None:
    """Downscale to `width` px wide (Lanczos), keeping the aspect ratio and the provenance."""
    width = int(width)
    with Image.open(src) as img:
        img.load()
        height = max(1, round(img.height * width / img.width))
        small = img.convert("RGB").resize((width, height), Image.LANCZOS)
        prov = {**_provenance(img), "thumbnail_of": src.rsplit("/", 1)[-1], "width": width}
    write_png(dst, small, {"provenance": json.dumps(prov, sort_keys=True)})


def overlay(src: str, dst: str, name: str, model_json: str) -> None:
    from . import overlays
    from .files import read_json

    geometry = read_json(model_json)["geometry"]
    with Image.open(src) as img:
        img.load()
        out = overlays.OVERLAYS[name](img, geometry)
        prov = {**_provenance(img), "overlay": name,
                "overlay_side_px": geometry["kernel_footprint_px"]}
    write_png(dst, out, {"provenance": json.dumps(prov, sort_keys=True)})
