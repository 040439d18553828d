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


def subject_centre(img: Image.Image, preview: bool) -> tuple[tuple[int, int], str]:
    """Where the subject is, in pixels, and how that was found: on the preview miniature the
    centre of the first face the detector finds (pipeline/detector.py); otherwise, or when it
    finds none, the image's centre."""
    if preview:
        import numpy as np

        from .detector import faces

        found = faces(np.asarray(img.convert("RGB")))
        if found:
            x0, y0, x1, y1 = found[0]["box"]
            return ((x0 + x1) // 2, (y0 + y1) // 2), "the detected face"
    return (img.width // 2, img.height // 2), "the image centre"


def overlay(src: str, dst: str, name: str, model_json: str) -> None:
    from . import overlays
    from .files import read_json

    info = read_json(model_json)
    geometry = info["geometry"]
    with Image.open(src) as img:
        img.load()
        centre, how = subject_centre(img, bool(info.get("preview")))
        out = overlays.OVERLAYS[name](img, geometry, centre)
        prov = {**_provenance(img), "overlay": name,
                "overlay_side_px": geometry["kernel_footprint_px"],
                "overlay_centre": list(centre), "overlay_centred_on": how}
    write_png(dst, out, {"provenance": json.dumps(prov, sort_keys=True)})
