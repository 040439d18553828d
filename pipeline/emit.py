"""Emission: turn the spec and the files the stages made into the data Hugo renders.

Writes build/data/article.json (read by the shortcodes under site/layouts/shortcodes/) and
static/images/manifest.json (provenance and sha256 of every image). Pure Python, no torch.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

from PIL import Image as PILImage

from . import geometry as geom
from .files import read_json, safetensors_metadata, sha256_file, write_json
from .spec import Figure, Image, Spec

DECODER_LABELS = {"vae": "VAE", "approx": "Approx"}


def class_source(path: str | Path, name: str) -> str:
    """The source of one class, straight from the file (what the article prints)."""
    text = Path(path).read_text(encoding="utf-8")
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return ast.get_source_segment(text, node)
    raise LookupError(f"class {name} not found in {path}")


def describe(prov: dict) -> str:
    """One line a reader can reproduce the image from."""
    return (f"{prov['prompt_key']} · seed {prov['seed']} · {prov['width']}×{prov['height']} · "
            f"{prov['steps']} steps {prov['sampler']} ({prov['schedule']}) · CFG {prov['guidance']}"
            f" · attention {prov['attention']} · {DECODER_LABELS[prov['decoder']]} decode"
            + (f" + {prov['overlay']}" if prov.get("overlay") else "")
            + f" · {prov['model']} on {prov['device']} ({prov['dtype']})")


def _image_info(images_dir: Path, file: str) -> tuple[dict, dict]:
    path = images_dir / file
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `doit` to regenerate it")
    with PILImage.open(path) as im:
        prov = json.loads(im.info.get("provenance", "{}"))
        return prov, {"w": im.width, "h": im.height}


def figure_data(fig: Figure, spec: Spec, images_dir: Path, train_size: int,
                manifest: dict) -> dict:
    columns = [{"heading": f"{g.width}×{g.height}" if fig.headings == "size" else "",
                "marked": fig.headings == "size" and g.width == g.height == train_size}
               for g in fig.cells]
    rows = []
    for row in fig.rows:
        cells = []
        for g in fig.cells:
            im = Image(g, row.decoder, row.overlay)
            prov, full = _image_info(images_dir, im.file)
            thumb_prov, thumb = _image_info(images_dir, im.thumb_file(fig.thumb))
            for file, p in ((im.file, prov), (im.thumb_file(fig.thumb), thumb_prov)):
                manifest[file] = {**p, "sha256": sha256_file(images_dir / file)}
            cells.append({"full": im.file, "thumb": im.thumb_file(fig.thumb),
                          "w": full["w"], "h": full["h"], "tw": thumb["w"], "th": thumb["h"],
                          "title": describe(prov), "generation": g.id,
                          "alt": f"{g.prompt}, seed {g.seed}, {g.width}×{g.height}, "
                                 f"{DECODER_LABELS[row.decoder]} decode"})
        rows.append({"decoder": row.decoder, "label": DECODER_LABELS[row.decoder],
                     "toggle": row.toggle, "overlay": row.overlay, "cells": cells})
    provenance = [{"generation": g.id, "prompt": g.prompt, "seed": g.seed,
                   "size": f"{g.width}×{g.height}", "attention": g.attention} for g in fig.cells]
    return {"id": fig.id, "section": fig.section, "caption": fig.caption, "layout": fig.layout,
            "toggle": fig.toggle, "thumb": fig.thumb, "columns": columns, "rows": rows,
            "provenance": provenance}


def run(spec_path: str, model_json: str, approx_json: str, approx_source: str, images_dir: str,
        out_data: str, out_manifest: str) -> None:
    from . import spec as specmod

    spec = specmod.load(spec_path)
    info = read_json(model_json)
    g = info["geometry"]
    images = Path(images_dir)
    manifest: dict[str, dict] = {}
    figures = {f.id: figure_data(f, spec, images, g["train_size"], manifest)
               for f in spec.figures}
    sizes = sorted({(c.width, c.height) for f in spec.figures for c in f.cells})
    levels = {f"{w}x{h}": [list(s) for s in geom.level_sizes(g, w, h)] for w, h in sizes}
    fit = read_json(approx_json)
    data = {
        "model": {"preview": info["preview"], "name": info["name"], "id": info["id"],
                  "kind": info["kind"]},
        "geometry": {**g, "levels": levels},
        "sampling": spec.sampling,
        "prompts": spec.prompts,
        "approx": {"source": class_source(approx_source, "ApproxDecoder"), "fit": fit},
        "figures": figures,
    }
    write_json(out_data, data)
    keep = set(manifest) | {im.file for im in spec.decodes()}
    for stale in sorted(set(p.name for p in images.glob("*.png")) - keep):
        (images / stale).unlink()  # e.g. the old images of a seed edited out of figures.toml
        print(f"removed {stale}: no figure shows it any more")
    write_json(out_manifest, {"model": {k: info[k] for k in ("id", "name", "kind", "sha256")},
                              "approx_decoder": fit, "images": manifest})
