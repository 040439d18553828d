"""The `measure` task: run the detector (pipeline/detector.py) over every VAE decode the article
shows, and summarise per size and attention variant, so that what the prose says the images show
is measured on the images this build made.

The detector knows the preview miniature's domain only (portraits rendered by
pipeline/portraits.py): on any other model the stage records that it does not apply.
"""
from __future__ import annotations

from pathlib import Path

from . import detector, intervals, portraits, spec as specmod
from .files import read_json, write_json

REFERENCE_IMAGES = 64   # training renders the colour statistics are compared with
REFERENCE_SEED = 99     # a seed of the renderer the training run did not use (it used 0)


def reference(prompts: dict[str, str]) -> dict:
    captions = portraits.training_captions(prompts)
    return detector.reference(portraits.dataset_item(captions, i, REFERENCE_SEED)[1]
                              for i in range(REFERENCE_IMAGES))


def detector_applies(info: dict, out: str, stage: str) -> bool:
    """The detector knows the preview miniature's domain only: on another model a stage that
    uses it records that it does not apply (in `out`) and says so."""
    if info["kind"] == "preview":
        return True
    write_json(out, {"applies": False, "model": info["id"]})
    print(f"{stage}: the detector applies to the preview miniature only; skipped")
    return False


def run(spec_path: str, model_json: str, images_dir: str, out: str) -> None:
    from PIL import Image

    spec = specmod.load(spec_path)
    info = read_json(model_json)
    if not detector_applies(info, out, "measure"):
        return
    ref = reference(spec.prompts)
    images, groups = {}, {}
    for im in spec.decodes():
        if im.decoder != "vae":
            continue
        with Image.open(Path(images_dir) / im.file) as img:
            row = detector.analyse(img.convert("RGB"), ref)
        images[im.file] = {**row, "size": im.gen.width, "variant": im.gen.variant}
        groups.setdefault(f"{im.gen.width}", {}).setdefault(im.gen.variant, []).append(row)
    summary = {size: {variant: intervals.summarise(rows) for variant, rows in by.items()}
               for size, by in groups.items()}
    trained = str(info["geometry"]["train_size"])
    train = summary.get(trained, {}).get("usual")
    write_json(out, {"applies": True, "model": info["id"], "detector": detector.VERSION,
                     "renderer": portraits.VERSION, "reference": ref, "summary": summary,
                     "trained": train, "images": images})
    for size, by in sorted(summary.items(), key=lambda kv: int(kv[0])):
        u = by.get("usual")
        if u:
            print(f"measure {size}: {u['n']} images, exactly one character {u['exactly_one']:.0%}, "
                  f"two or more {u['two_plus']:.0%}, colour error {u['colour_error']:.2f}")
