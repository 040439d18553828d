"""The evaluation (section 6): over many seeds held apart from the figures', how often each image
size fails and how much each attention variant repairs, as measured by the detector.

For every ((width, height), variant) cell of figures.toml's [evaluation], each generation's
latents (sampled by the `sample:<size>` tasks, cached like every other) are decoded with the VAE
and analysed (pipeline/detector.py): the share with exactly one character, the share with two or
more, and the colour error against the training renders, each with a 95% interval (Wilson for
shares, a seeded bootstrap for the mean; pipeline/intervals.py). A contact sheet per cell shows
every evaluated image with the detector's count printed on it, so a reader can check the detector
against their own eyes.
"""
from __future__ import annotations

from pathlib import Path

from . import detector, intervals

SHEET_COLUMNS = 8


def cell_summary(rows: list[dict]) -> dict:
    """Shares and mean colour error of one cell, with 95% intervals."""
    n = len(rows)
    one = sum(r["characters"] == 1 for r in rows)
    two = sum(r["characters"] >= 2 for r in rows)
    none = sum(r["characters"] == 0 for r in rows)
    errors = [r["colour_error"] for r in rows]
    return {"n": n, "exactly_one": one / n, "exactly_one_ci": intervals.wilson(one, n),
            "two_plus": two / n, "two_plus_ci": intervals.wilson(two, n), "none": none / n,
            "colour_error": sum(errors) / n, "colour_error_ci": intervals.bootstrap_mean(errors)}


def contact_sheet(images: list, counts: list[int], thumb: int):
    """Thumbnails in rows of SHEET_COLUMNS, each with the detector's count in its corner."""
    from PIL import Image, ImageDraw

    rows = -(-len(images) // SHEET_COLUMNS)
    cols = min(len(images), SHEET_COLUMNS)
    sheet = Image.new("RGB", (cols * (thumb + 2), rows * (thumb + 2)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (img, count) in enumerate(zip(images, counts)):
        x, y = (i % SHEET_COLUMNS) * (thumb + 2), (i // SHEET_COLUMNS) * (thumb + 2)
        small = img.resize((thumb, round(thumb * img.height / img.width)), Image.LANCZOS)
        sheet.paste(small, (x, y))
        label = str(count)
        draw.rectangle((x, y, x + 8 + 7 * len(label), y + 14), fill="black")
        draw.text((x + 4, y + 2), label, fill="yellow" if count != 1 else "white")
    return sheet


def run(spec_path: str, model_json: str, device: str, latents_dir: str, seeds: str,
        out_json: str, images_dir: str) -> None:
    import json

    import torch

    from . import decode, measure, model, spec as specmod
    from .files import read_json, write_json, write_png
    from .sampling import load_latents

    spec = specmod.load(spec_path)
    info = read_json(model_json)
    if not measure.detector_applies(info, out_json, "evaluate"):
        return
    g = info["geometry"]
    cells = spec.evaluation_cells(int(seeds), g)
    comps = model.load(model_json, device)
    ref = measure.reference(spec.prompts)
    analysed, sheets = {}, {}
    for gens in cells.values():
        for gen in gens:
            if gen.id in analysed:
                continue
            z, prov = load_latents(Path(latents_dir) / f"{gen.id}.safetensors")
            with torch.no_grad():
                img = decode.to_pil(decode.vae(z[None], comps.vae)[0])
            analysed[gen.id] = {**detector.analyse(img, ref), "image": img, "provenance": prov}
        sheet = gens[0].sheet_file
        if sheet not in sheets:
            rows = [analysed[x.id] for x in gens]
            sheets[sheet] = [x.id for x in gens]
            made = {"evaluation": sheet, "generations": sheets[sheet],
                    "counts": [r["characters"] for r in rows], "detector": detector.VERSION,
                    **{k: rows[0]["provenance"][k] for k in ("width", "height", "attention",
                                                              "steps", "sampler", "guidance",
                                                              "model", "device", "dtype")}}
            write_png(Path(images_dir) / sheet,
                      contact_sheet([r["image"] for r in rows], made["counts"],
                                    spec.evaluation["thumb"]),
                      {"provenance": json.dumps(made, sort_keys=True)})
    out_cells = []
    for ((w, h), variant), gens in cells.items():
        rows = [analysed[x.id] for x in gens]
        out_cells.append({"width": w, "height": h, "variant": variant,
                          "sampled_as": gens[0].attention,
                          "sheet": gens[0].sheet_file,
                          "counts": [r["characters"] for r in rows], **cell_summary(rows)})
    e = spec.evaluation
    write_json(out_json, {
        "applies": True, "model": info["id"], "model_sha256": info.get("sha256"),
        "detector": detector.VERSION, "level": intervals.LEVEL, "seeds": int(seeds), "full_seeds": e["seeds"],
        "default_seeds": e["default_seeds"], "prompts": e["prompts"],
        "seed_range": [e["seed_start"], e["seed_start"] + int(seeds) - 1],
        "train_size": g["train_size"], "reference": ref, "cells": out_cells,
        "generations": {k: {kk: vv for kk, vv in v.items() if kk not in ("image", "provenance")}
                        for k, v in sorted(analysed.items())}})
    for c in out_cells:
        print(f"evaluate {c['width']}x{c['height']} {c['variant']}: n={c['n']}, two or more "
              f"{c['two_plus']:.0%}, exactly one {c['exactly_one']:.0%}, colour error "
              f"{c['colour_error']:.2f}")
