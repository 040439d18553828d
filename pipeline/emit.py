"""Emission: turn the spec and the files the stages made into the data Hugo renders.

Writes build/data/article.json (read by the shortcodes under site/layouts/shortcodes/) and
static/images/manifest.json (provenance and sha256 of every image). Pure Python, no torch.
"""
from __future__ import annotations

import ast
import functools
import json
import math
from pathlib import Path

from PIL import Image as PILImage

from . import geometry as geom
from .files import read_json, safetensors_metadata, sha256_file, write_json
from . import spec as specmod
from .spec import Figure, Image, Plot, Spec

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
    if prov.get("plot") in ("evaluation", "evaluation-sweeps"):
        return (f"{prov['plot']} plot: detector {prov['detector']} over {len(prov['inputs'])} "
                f"generations ({prov['seeds']} per cell, seeds {prov['seed_range'][0]}–"
                f"{prov['seed_range'][1]}) · {prov['model']}")
    if prov.get("evaluation"):
        return (f"contact sheet of {len(prov['generations'])} evaluated generations at "
                f"{prov['width']}×{prov['height']}, variant {prov['variant']}, detector "
                f"{prov['detector']} counts {prov['counts']} · {prov['model']} on {prov['device']}")
    if "vae_anomaly" in prov:
        return (f"{prov['plot']} plot of the VAE log-variance analysis of {len(prov['inputs'])} "
                f"images with VAE {prov['vae']['id']} · subject {prov['subject']} · "
                f"{prov['model']} on {prov['device']} ({prov['dtype']})")
    if "plot" in prov:
        return (f"{prov['plot']} plot of attention statistics at step {prov['probe']['step'] + 1}"
                f" of {prov['steps']} ({prov['sampler']}, CFG {prov['guidance']}) · "
                f"{len(prov['inputs'])} probed generations of {prov['prompt_key']} · "
                f"{prov['model']} on {prov['device']} ({prov['dtype']})")
    return (f"{prov['prompt_key']} · seed {prov['seed']} · {prov['width']}×{prov['height']} · "
            f"{prov['steps']} steps {prov['sampler']} ({prov['schedule']}) · CFG {prov['guidance']}"
            f" · variant {prov['variant']} · {DECODER_LABELS[prov['decoder']]} decode"
            + (f" + {prov['overlay']}" if prov.get("overlay") else "")
            + f" · {prov['model']} on {prov['device']} ({prov['dtype']})")


def _image_info(images_dir: Path, file: str) -> tuple[dict, dict]:
    path = images_dir / file
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `doit` to regenerate it")
    with PILImage.open(path) as im:
        prov = json.loads(im.info.get("provenance", "{}"))
        return prov, {"w": im.width, "h": im.height}


def _cell(item: Image | Plot, thumb_width: int, alt: str, images_dir: Path,
          manifest: dict) -> dict:
    """A thumbnail linking to its full image; both recorded in the manifest."""
    prov, full = _image_info(images_dir, item.file)
    thumb_prov, thumb = _image_info(images_dir, item.thumb_file(thumb_width))
    for file, p in ((item.file, prov), (item.thumb_file(thumb_width), thumb_prov)):
        manifest[file] = {**p, "sha256": sha256_file(images_dir / file)}
    return {"full": item.file, "thumb": item.thumb_file(thumb_width), "w": full["w"],
            "h": full["h"], "tw": thumb["w"], "th": thumb["h"], "title": describe(prov),
            "alt": alt, "generation": getattr(getattr(item, "gen", None), "id", None)}


def _alt(g, decoder: str) -> str:
    return (f"{g.prompt}, seed {g.seed}, {g.width}×{g.height}, variant {g.variant}, "
            f"{DECODER_LABELS[decoder]} decode")


def shown_generations(fig: Figure, spec: Spec) -> list:
    """The generations a figure's provenance table lists (a plot lists what it was drawn from)."""
    if fig.plot in specmod.VAE_PLOTS:
        return [im.gen for im in spec.vae_anomaly_images()]
    if fig.plot:
        return spec.plot_generations(fig)
    return list(fig.cells)


def vae_summary(vae_json: Path) -> dict:
    """The analysis' numbers, formatted for captions and prose."""
    r = json.loads(Path(vae_json).read_text())
    e = r["experiment"]
    out = {"threshold": f"{e['anomalous']['threshold']:g}", "images": len(r["images"]),
           "flagged_images": r["flagged_images"], "floor": f"{r['floor']:g}",
           "ceiling": f"{r['ceiling']:g}", "floor_margin": f"{r['config']['floor_margin']:g}",
           "robust_z": f"{r['config']['robust_z']:g}",
           "size": "{}×{}".format(*r["config"]["size"]),
           "subject_flagged": "yes" if r["subject_flagged"] else "no", "vae": r["vae"]["id"],
           "scaling_factor": r["vae"]["scaling_factor"],
           "perturbation": r["config"]["perturbation"]}
    for name in ("anomalous", "ordinary"):
        out[f"{name}_changed"] = f"{e[name]['changed_outside']:.1%}"
        out[f"{name}_mean"] = f"{e[name]['mean_change_outside']:.4f}"
        out[f"{name}_logvar"] = f"{e[name]['logvar']:.1f}"
    ratio = e["anomalous"]["mean_change_outside"] / max(e["ordinary"]["mean_change_outside"], 1e-12)
    out["ratio"] = f"{ratio:.1f}"
    out.update(vae_verdict(r, ratio))
    return out


GLOBAL_SHARE = 0.01  # pixels outside the patch that must change for a perturbation to be global
GLOBAL_RATIO = 5.0   # ... and how many times the ordinary position's mean change it must reach


def vae_verdict(r: dict, ratio: float) -> dict:
    """The side-channel test's outcome as keys the page's wording is chosen by: whether any
    encoded image reaches the clamp floor (within floor_margin) at all, "reached" or
    "not-reached", and whether perturbing the most extreme position changes the image beyond its
    patch (at least GLOBAL_SHARE of the pixels there, GLOBAL_RATIO times the ordinary position's
    mean change), "global" or "local"."""
    lowest = min(i["logvar_min"] for i in r["images"])
    reached = lowest <= r["floor"] + r["config"]["floor_margin"]
    a = r["experiment"]["anomalous"]
    wide = a["changed_outside"] >= GLOBAL_SHARE and ratio >= GLOBAL_RATIO
    return {"lowest_logvar": f"{lowest:.1f}", "floor_key": "reached" if reached else "not-reached",
            "change_key": "global" if wide else "local",
            "global_share": f"{GLOBAL_SHARE:.0%}", "global_ratio": f"{GLOBAL_RATIO:g}"}


def signed(points: int) -> str:
    """+12 or −7 (a typographic minus), for percentage points."""
    return f"{points:+d}".replace("-", "−")


MIN_COMPARED = 8  # generations per cell below which no difference between cells is claimed


def verdict(paired: dict, same_images: bool) -> str:
    """A variant against the usual UNet on the same seeds, as a key the page's wording is
    chosen by: "same-images", "too-few" (fewer than MIN_COMPARED generations a cell),
    "no-difference" (the paired test finds none), "lower" or "higher"."""
    if same_images:
        return "same-images"
    if paired.get("n", MIN_COMPARED) < MIN_COMPARED:
        return "too-few"
    if not paired["significant"]:
        return "no-difference"
    return "lower" if paired["difference"] < 0 else "higher"


def evaluation_summary(result: dict, images: Path, manifest: dict) -> dict:
    """The evaluation for the page: per-cell numbers formatted for the table and the prose, the
    plot's and the contact sheets' files (recorded in the manifest with their provenance)."""
    if not result.get("applies"):
        return {"applies": False, "model": result["model"]}
    plot = _cell(specmod.EVALUATION_PLOT, specmod.EVALUATION_PLOT_THUMB,
                 "evaluation plot: share of images with two or more "
                 "characters and colour error against image size, per attention variant",
                 images, manifest)
    sweeps_plot = (_cell(specmod.SWEEPS_PLOT, specmod.EVALUATION_PLOT_THUMB,
                         "sweeps plot: share of images with two or more characters and with "
                         "exactly one, per variant of each sweep at "
                         + ", ".join(f"{s['size']}×{s['size']}" for s in result["sweeps"]),
                         images, manifest) if result.get("sweeps") else None)
    cells, by = [], {}
    for c in result["cells"]:
        prov, full = _image_info(images, c["sheet"])
        manifest[c["sheet"]] = {**prov, "sha256": sha256_file(images / c["sheet"])}
        row = {"size": f"{c['width']}×{c['height']}", "width": c["width"],
               "variant": c["variant"], "sampled_as": c["sampled_as"], "n": c["n"],
               "sheet": c["sheet"], "sheet_w": full["w"], "sheet_h": full["h"],
               "counts": c["counts"],
               "one_pct": percent(c["exactly_one"]), "none_pct": percent(c["none"]),
               "malformed_pct": percent(c["malformed"]),
               "malformed_ci": "{}–{}".format(*map(percent, c["malformed_ci"])),
               "one_ci": "{}–{}".format(*map(percent, c["exactly_one_ci"])),
               "two_pct": percent(c["two_plus"]),
               "two_ci": "{}–{}".format(*map(percent, c["two_plus_ci"])),
               "colour": f"{c['colour_error']:.2f}",
               "colour_ci": (f"{c['colour_error_ci'][0]:.2f}–{c['colour_error_ci'][1]:.2f}"
                             if c["n"] > 1 else "no interval from one image")}
        cells.append(row)
        by.setdefault(str(c["width"]), {})[c["variant"]] = row
    measured = {(str(c["width"]), c["variant"]): c for c in result["cells"]}
    for size, row in by.items():
        for variant, cell in row.items():
            mine = measured[(size, variant)]
            same = mine["sampled_as"] == "usual"
            vs = mine["vs_usual"]
            cell["colour_verdict"] = verdict({**vs["colour_error"], "n": mine["n"]}, same)
            for short, key in (("two", "two_plus"), ("one", "exactly_one"),
                               ("malformed", "malformed")):
                d = vs[key]
                cell[f"{short}_diff"] = signed(percent(d["difference"]))
                cell[f"{short}_diff_ci"] = "{} to {}".format(*(signed(percent(x))
                                                               for x in d["difference_ci"]))
                cell[f"{short}_p"] = f"{d['p_value']:.2g}"
                cell[f"{short}_verdict"] = verdict(d, same)
    source = result.get("source", {"mode": "computed"})
    agree = result["agreement"]
    if agree["applies"]:
        agree = {**agree, "pct": percent(agree["agree"] / agree["n"]),
                 "sizes": [{**s, "pct": percent(s["agree"] / s["n"])} for s in agree["sizes"]]}
        if agree.get("held_out"):
            held = agree["held_out"]
            agree["held_out"] = {**held, "pct": percent(held["agree"] / held["n"])}
    return {"applies": True, "level": round(100 * result["level"]), "min_compared": MIN_COMPARED,
            "agreement": agree,
            "seeds": result["seeds"], "source": source,
            "frozen": source["mode"] == "frozen",
            "full_seeds": result["full_seeds"],
            "default_seeds": result["default_seeds"], "full": result["seeds"] >= result["full_seeds"],
            "seed_range": "{}–{}".format(*result["seed_range"]),
            "prompts": ", ".join(result["prompts"]), "detector": result["detector"],
            "model": result["model"], "generations": len(result["generations"]),
            "variants": result["variants"], "labels": result["labels"],
            "sizes": sorted({c["width"] for c in result["cells"]}),
            "sweeps": result["sweeps"], "sweeps_plot": sweeps_plot,
            "cells": cells, "by": by, "plot": plot}


def caption(fig: Figure, numbers: dict | None) -> str:
    """The spec's caption, with {placeholders} filled from the measured numbers."""
    if "{" not in fig.caption:
        return fig.caption
    try:
        return fig.caption.format(**(numbers or {}))
    except KeyError as exc:
        raise KeyError(f"figure {fig.id!r}: caption field {exc} is not a measured number; use one "
                       f"of {', '.join(sorted(numbers or {}))}") from None


def figure_data(fig: Figure, spec: Spec, images_dir: Path, train_size: int,
                manifest: dict, numbers: dict | None = None) -> dict:
    cell = functools.partial(_cell, thumb_width=fig.thumb, images_dir=images_dir,
                             manifest=manifest)
    if fig.plot:
        columns = []
        rows = [{"decoder": "plot", "label": "", "toggle": None, "overlay": None,
                 "cells": [cell(Plot(fig.id), alt=f"{fig.plot} plot: {fig.caption}")]}]
    elif fig.layout == "compare":
        (row,) = fig.rows
        from .variants import label

        columns = [{"heading": label(spec.variants, v), "variant": v, "marked": v == "usual"}
                   for v in fig.variants]
        rows = [{"decoder": row.decoder, "toggle": None, "overlay": None,
                 "label": f"{gens[0].prompt} · seed {gens[0].seed}",
                 "cells": [cell(Image(g, row.decoder), alt=_alt(g, row.decoder)) for g in gens]}
                for gens in fig.compare_rows()]
    else:
        columns = [{"heading": f"{g.width}×{g.height}" if fig.headings == "size" else "",
                    "marked": fig.headings == "size" and g.width == g.height == train_size}
                   for g in fig.cells]
        rows = [{"decoder": row.decoder, "label": DECODER_LABELS[row.decoder],
                 "toggle": row.toggle, "overlay": row.overlay,
                 "cells": [cell(Image(g, row.decoder, row.overlay), alt=_alt(g, row.decoder))
                           for g in fig.cells]}
                for row in fig.rows]
    provenance = [{"generation": g.id, "prompt": g.prompt, "seed": str(g.seed),  # Hugo: no 7e+08
                   "size": f"{g.width}×{g.height}", "variant": g.variant}
                  for g in shown_generations(fig, spec)]
    return {"id": fig.id, "section": fig.section, "caption": caption(fig, numbers),
            "layout": fig.layout,
            "toggle": fig.toggle, "thumb": fig.thumb, "columns": columns, "rows": rows,
            "provenance": provenance, "plot": fig.plot,
            "probe": ({**spec.probe_config(), "seeds": spec.probe["seeds"]}
                      if fig.plot in specmod.PROBE_PLOTS else None)}


def probe_summary(spec: Spec, probe_dir: str | Path, train_size: int) -> dict | None:
    """Mean entropy and total weight per size, variant and UNet level ("first" = the highest-
    resolution level with self-attention), for numbers quoted in the prose; at each size other
    than the trained one, whether logit scaling measurably undoes what the size did
    (logit_verdict)."""
    from .plots import level_means

    if not spec.probe:
        return None
    by: dict[tuple, list] = {}
    for g in spec.probe_generations():
        by.setdefault((g.width, g.variant), []).append(read_json(Path(probe_dir) / g.probe_file))
    summary: dict[str, dict] = {}
    first_entropy: dict[tuple, float] = {}  # unrounded, for the verdicts below
    for (width, variant), results in sorted(by.items()):
        cell = {}
        means = {key: level_means(results, key) for key in ("entropy", "mass")}
        for key, by_level in means.items():
            for level, value in by_level.items():
                cell.setdefault(str(level), {})[key] = round(value, 2)
        first_level = min(cell, key=int)
        first_entropy[(str(width), variant)] = means["entropy"][int(first_level)]
        n = next(x["n"] for x in results[0]["layers"] if str(x["level"]) == first_level)
        cell[first_level]["uniform"] = round(math.log(n), 2)  # the entropy of uniform attention
        cell["first"] = cell[first_level]
        summary.setdefault(str(width), {})[variant] = cell
    base = first_entropy.get((str(train_size), "usual"))
    for width, cells in summary.items():  # what logit scaling does to the first level's entropy
        if "usual" in cells and "logit-scale" in cells:
            u, l = cells["usual"]["first"], cells["logit-scale"]["first"]
            cells["logit_shift"] = round(l["entropy"] - u["entropy"], 2)
            cells["usual_gap"] = round(u["uniform"] - u["entropy"], 2)
            if base is not None and width != str(train_size):
                cells.update(logit_verdict(base, first_entropy[(width, "usual")],
                                           first_entropy[(width, "logit-scale")]))
    first = next(iter(by.values()))[0]
    return {"step": first["step"] + 1, "sigma": round(first["sigma"], 2), "summary": summary,
            "seeds": f"{len(spec.probe['seeds'])} seed" + "s" * (len(spec.probe["seeds"]) != 1),
            "layer": first["histogram"]["layer"]}


SEPARATES = 0.25  # the share of the size's entropy change logit scaling must undo to "separate"


def logit_verdict(trained: float, usual: float, scaled: float) -> dict:
    """Whether the probe separates logit scaling from the usual attention at one size, as a key
    the page's wording is chosen by: the first level's entropy moved by `usual - trained` when
    the size changed, and logit scaling (whose purpose is to undo that move) moved it back by
    `usual - scaled`. "no-move" (the size hardly moves it), "wrong-way" (scaling moves it further
    the same way), "separates" (it undoes at least SEPARATES of the move) or "barely"."""
    moved = usual - trained
    if abs(moved) < 0.005:
        return {"size_move": 0.0, "undone_pct": None, "logit_key": "no-move"}
    undone = (usual - scaled) / moved
    key = "wrong-way" if undone < 0 else "separates" if undone >= SEPARATES else "barely"
    return {"size_move": round(moved, 2), "undone_pct": abs(round(100 * undone)),
            "logit_key": key}


def percent(share: float) -> int:
    return round(100 * share)


def measure_summary(m: dict) -> dict:
    """What the detector measured, in the units the prose quotes (percentages, 2 decimals)."""
    if not m.get("applies"):
        return {"applies": False}
    out = {"applies": True, "detector": m["detector"], "sizes": {}}
    for size, by in m["summary"].items():
        out["sizes"][size] = {v: {"n": s["n"], "one_pct": percent(s["exactly_one"]),
                                  "two_plus_pct": percent(s["two_plus"]),
                                  "none_pct": percent(s["none"]),
                                  "colour_error": round(s["colour_error"], 2),
                                  "saturation": round(s["saturation"], 3),
                                  "contrast": round(s["contrast"], 3)}
                              for v, s in by.items()}
    ref = m["reference"]
    out["reference"] = {k: round(ref[k]["mean"], 3) for k in ref}
    return out


def training_summary(path: Path) -> dict | None:
    """How the model was trained (the preview miniature records it beside its weights)."""
    if not path.exists():
        return None
    t = read_json(path)
    s = t["settings"]
    total = t.get("total_seconds")  # over every invocation; absent in records older than it
    return {"device": t["device"], "torch": t["torch"],
            "wall_minutes": round((t["wall_seconds"] if total is None else total) / 60, 1),
            "time_partial": total is None and bool(t.get("resumed_from")),
            "unet_steps": t["unet_steps_done"], "unet_batch": s["unet_batch"],
            "unet_lr": s["unet_lr"], "vae_steps": s["vae_steps"], "images": s["images"],
            "data_seed": s["seed"], "final_loss": round(t["final_loss"], 4),
            "vae_mse": round(t["vae_final_mse"], 4), "scaling_factor": t["scaling_factor"],
            "caption_dropout_pct": round(100 * t.get("caption_dropout", 0.1)),
            "captions": t.get("distinct_captions", len(t["captions"]))}  # distinct captions


def prompt_tokens(model_dir: Path) -> int:
    """How many tokens every prompt is padded to: the text encoder's position count (77 in SD
    1.5, whose cross-attention therefore has that many keys at every image size)."""
    return int(read_json(model_dir / "text_encoder" / "config.json")["max_position_embeddings"])


def run(spec_path: str, model_json: str, approx_json: str, approx_source: str, images_dir: str,
        out_data: str, out_manifest: str, probe_dir: str, vae_json: str,
        measure_json: str, eval_json: str | None = None) -> None:
    spec = specmod.load(spec_path)
    info = read_json(model_json)
    g = info["geometry"]
    images = Path(images_dir)
    manifest: dict[str, dict] = {}
    vae = vae_summary(Path(vae_json)) if spec.vae_anomaly else None
    figures = {f.id: figure_data(f, spec, images, g["train_size"], manifest,
                                 vae if f.plot in specmod.VAE_PLOTS else None)
               for f in spec.figures}
    sizes = sorted({(c.width, c.height) for f in spec.figures for c in f.cells})
    levels = {f"{w}x{h}": [list(s) for s in geom.level_sizes(g, w, h)] for w, h in sizes}
    trained = geom.key_counts(g, g["train_size"], g["train_size"])
    factors = {f"{w}x{h}": [{"level": lv, "n": n, "n_train": trained[lv],
                             "factor": round(geom.logit_factor(n, trained[lv]), 4)}
                            for lv, n in enumerate(geom.key_counts(g, w, h))
                            if lv in g["attention_levels"]]
               for w, h in sizes}
    fit = read_json(approx_json)
    data = {
        "model": {"preview": info["preview"], "name": info["name"], "id": info["id"],
                  "kind": info["kind"], "prompt_tokens": prompt_tokens(Path(info["dir"]))},
        "geometry": {**g, "levels": levels,
                     "size_multiple": g["vae_factor"] * g["deepest_stride"]},
        "attention": factors,
        "probe": probe_summary(spec, probe_dir, g["train_size"]),
        "vae_anomaly": vae,
        "sampling": spec.sampling,
        "variants": {name: {**v, **({"until_pct": percent(v["until"])} if "until" in v else {}),
                            **({"denoise_pct": percent(v["denoise"])} if "denoise" in v else {})}
                     for name, v in spec.variants.items()},
        "prompts": spec.prompts,
        "approx": {"source": class_source(approx_source, "ApproxDecoder"), "fit": fit},
        "figures": figures,
        "measure": measure_summary(read_json(measure_json)),
        "training": training_summary(Path(info["dir"]) / "training.json"),
        "evaluation": (evaluation_summary(read_json(eval_json), images, manifest)
                       if spec.evaluation else {"applies": False}),
    }
    write_json(out_data, data)
    keep = set(manifest) | {im.file for im in spec.decodes()}
    for stale in sorted(set(p.name for p in images.glob("*.png")) - keep):
        (images / stale).unlink()  # e.g. the old images of a seed edited out of figures.toml
        print(f"removed {stale}: no figure shows it any more")
    write_json(out_manifest, {"model": {k: info[k] for k in ("id", "name", "kind", "sha256")},
                              "approx_decoder": fit, "images": manifest})
