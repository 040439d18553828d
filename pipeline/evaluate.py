"""The evaluation (section 6): over many seeds held apart from the figures', how often each image
size fails and how much each variant repairs, as measured by the detector.

For every ((width, height), variant) cell of figures.toml's [evaluation], each generation's
latents (sampled by the `sample:<size>` tasks, cached like every other) are decoded with the VAE
and analysed (pipeline/detector.py) into a record per generation. Per cell: the share with
exactly one character, the share with two or more, and the colour error against the training
renders, each with a 95% interval, and each variant against the usual attention on the same
seeds with paired tests (pipeline/intervals.py). A contact sheet per cell shows every evaluated
image with the detector's count printed on it, so a reader can check the detector against their
own eyes. A full run is frozen (pipeline/freeze.py) and a plain `doit` reuses it.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from . import detector, intervals
from .freeze import model_identity

SHEET_COLUMNS = 8


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


def record(gen, analysed: dict) -> dict:
    """One evaluated generation: what made it and what the detector found in its VAE decode."""
    return {"prompt": gen.prompt, "seed": gen.seed, "width": gen.width, "height": gen.height,
            "variant": gen.variant, "detector": detector.VERSION,
            **{k: analysed[k] for k in ("characters", "eyes", "class", *detector.STATS,
                                        "colour_error")}}


def agreement(labels: dict, records: dict, model: str | None) -> dict:
    """How often the detector's class agrees with the hand label, per size, over the labelled
    generations these records hold (`labels`: the labels file's content), and which way it errs
    where it does not (per size: how many of each label it gave each other class), for the model
    `model` (freeze.model_identity); and the same over the labels of the file's `held_out` batches
    that are held out from this detector version (each batch's `before_version`: the labels were
    given before that version's rules were written, and were not used to write them), and how many labels a
    second, closer look changed (the file's `second_look`, when it has one). Only for the model
    the labels were made on: another model's images are not the ones that were looked at."""
    if labels.get("model") != model:
        return {"applies": False, "why": "other-model"}
    found = _tally({g: c for g, c in labels["labels"].items() if g in records}, records)
    if not found["n"]:
        return {"applies": False, "why": "none-labelled"}
    held = {g for batch in labels.get("held_out", [])
            if batch.get("before_version", 0) >= detector.VERSION for g in batch["generations"]}
    later = _tally({g: c for g, c in labels["labels"].items() if g in records and g in held},
                   records)
    second = labels.get("second_look")
    return {"applies": True, **found, "detector": detector.VERSION,
            "held_out": later if later["n"] else None,
            "second_look": {"looked_at": second["looked_at"], "changed": len(second["changed"])}
            if second else None}


def _tally(labels: dict, records: dict) -> dict:
    """Agreement of the records' classes with `labels` (generation -> class), per size."""
    per: dict[int, list[int]] = {}
    missed: dict[int, Counter] = {}
    for gen, label in labels.items():
        r = records[gen]
        per.setdefault(r["width"], [0, 0])
        per[r["width"]][0] += r["class"] == label
        per[r["width"]][1] += 1
        if r["class"] != label:
            missed.setdefault(r["width"], Counter())[label, r["class"]] += 1
    sizes = [{"size": w, "agree": a, "n": n,
              "misses": [{"label": label, "detector": found, "n": k} for (label, found), k
                         in sorted(missed.get(w, Counter()).items(), key=lambda m: (-m[1], m[0]))]}
             for w, (a, n) in sorted(per.items())]
    return {"sizes": sizes, "agree": sum(s["agree"] for s in sizes),
            "n": sum(s["n"] for s in sizes)}


def summary(spec, info: dict, cells: dict, records: dict, seeds: int, source: dict,
            labels: dict) -> dict:
    """The evaluation as the page reads it: per cell the shares and colour error with their
    intervals (intervals.summarise) and, beside the usual attention on the same seeds, the paired
    tests (intervals.compare); every generation's record; where the records came from; the
    detector's agreement with the hand labels (`labels`, the labels file's content)."""
    out_cells = []
    for ((w, h), variant), gens in cells.items():
        rows = [records[g.id] for g in gens]
        usual = [records[g.id] for g in cells[((w, h), "usual")]]
        out_cells.append({"width": w, "height": h, "variant": variant,
                          "sampled_as": gens[0].variant, "sheet": gens[0].sheet_file,
                          "generations": [g.id for g in gens],
                          "counts": [r["characters"] for r in rows],
                          **intervals.summarise(rows), "vs_usual": intervals.compare(usual, rows)})
    e = spec.evaluation
    from .variants import label

    named = {c["variant"] for c in out_cells}
    return {"applies": True, "model": info["id"], "model_sha256": info.get("sha256"),
            "variants": list(e["variants"]),
            "labels": {v: label(spec.variants, v) for v in sorted(named)},
            "sweeps": [{"title": sw["title"], "axis": sw["axis"], "size": sw["size"][0],
                        "variants": list(sw["variants"])} for sw in e.get("sweeps", ())],
            "detector": detector.VERSION, "level": intervals.LEVEL, "seeds": seeds,
            "full_seeds": e["seeds"], "default_seeds": e["default_seeds"],
            "prompts": e["prompts"], "seed_range": [e["seed_start"], e["seed_start"] + seeds - 1],
            "train_size": info["geometry"]["train_size"], "source": source, "cells": out_cells,
            "agreement": agreement(labels, records, model_identity(Path(info["dir"]))),
            "generations": dict(sorted(records.items()))}


def report(result: dict) -> None:
    for c in result["cells"]:
        print(f"evaluate {c['width']}x{c['height']} {c['variant']}: n={c['n']}, two or more "
              f"{c['two_plus']:.0%}, exactly one {c['exactly_one']:.0%}, colour error "
              f"{c['colour_error']:.2f}")


def run(spec_path: str, model_json: str, device: str, latents_dir: str, seeds: str,
        out_json: str, images_dir: str, labels_json: str, speedups: str = "default",
        why: str = "") -> None:
    """Decode and analyse every evaluated generation this build sampled, draw the contact
    sheets, write the evaluation; a full run (seeds >= [evaluation] seeds) is also frozen
    (pipeline/freeze.py). `why` says why no frozen evaluation was used, for the page."""
    import json

    import torch

    from . import decode, freeze, measure, model, spec as specmod
    from .files import read_json, write_json, write_png
    from .sampling import load_latents

    spec = specmod.load(spec_path)
    info = read_json(model_json)
    if not measure.detector_applies(info, out_json, "evaluate"):
        return
    if why:
        print(f"evaluate: {why}")
    seeds = int(seeds)
    cells = spec.evaluation_cells(seeds, info["geometry"])
    comps = model.load(model_json, device, speedups)
    ref = measure.reference(spec.prompts)
    records, images, provs = {}, {}, {}
    for gens in cells.values():
        for gen in gens:
            if gen.id in records:
                continue
            z, provs[gen.id] = load_latents(Path(latents_dir) / f"{gen.id}.safetensors")
            with torch.no_grad():
                images[gen.id] = decode.to_pil(decode.vae(z[None], comps.vae)[0])
            records[gen.id] = record(gen, detector.analyse(images[gen.id], ref))
    sheets = []
    for gens in cells.values():
        sheet = gens[0].sheet_file
        if sheet in sheets:
            continue
        sheets.append(sheet)
        prov = provs[gens[0].id]
        made = {"evaluation": sheet, "generations": [g.id for g in gens],
                "counts": [records[g.id]["characters"] for g in gens], "detector": detector.VERSION,
                **{k: prov.get(k) for k in ("width", "height", "variant", "steps", "sampler",
                                            "guidance", "model", "device", "dtype", "autocast",
                                            "speedups", "cpu_threads")}}
        write_png(Path(images_dir) / sheet,
                  contact_sheet([images[g.id] for g in gens], made["counts"],
                                spec.evaluation["thumb"]),
                  {"provenance": json.dumps(made, sort_keys=True)})
    source = {"mode": "computed", "why": why}
    if seeds >= spec.evaluation["seeds"]:
        frozen = freeze.save(spec, device, comps.speedups, Path(info["dir"]), seeds, records,
                             Path(images_dir), sheets)
        source = {"mode": "computed", "frozen": str(freeze.FROZEN), "date": frozen["date"],
                  "command": frozen["command"], "key": frozen["key"],
                  "machine": frozen["machine"]}
        print(f"evaluate: froze {len(records)} records into {freeze.FROZEN}")
    result = summary(spec, info, cells, records, seeds, source, read_json(labels_json))
    write_json(out_json, result)
    report(result)


def run_frozen(spec_path: str, model_json: str, frozen_json: str, out_json: str,
               images_dir: str, labels_json: str, bf16_made: str = "no") -> None:
    """The evaluation from its frozen records (pipeline/freeze.py; dodo.py has checked their
    key): the contact sheets are the frozen ones, nothing is sampled or decoded. `bf16_made`
    "yes": they were sampled in bf16 and this CPU samples in fp32 (freeze.bf16_made)."""
    from . import freeze, spec as specmod
    from .files import atomic_write, read_json, write_json

    spec = specmod.load(spec_path)
    info = read_json(model_json)
    frozen = read_json(frozen_json)
    cells = spec.evaluation_cells(frozen["seeds"], info["geometry"])
    for name in frozen["sheets"]:
        atomic_write(Path(images_dir) / name, (freeze.sheets_dir(frozen_json) / name).read_bytes())
    source = {"mode": "frozen", "frozen": str(frozen_json), "date": frozen["date"],
              "command": frozen["command"], "key": frozen["key"],
              "machine": frozen["machine"],
              "bf16_elsewhere": bf16_made == "yes"}  # see freeze.bf16_made
    records = {g.id: frozen["records"][g.id] for gens in cells.values() for g in gens}
    result = summary(spec, info, cells, records, frozen["seeds"], source, read_json(labels_json))
    write_json(out_json, result)
    report(result)
