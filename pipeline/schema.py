"""Checking figures.toml: each table's fields, types and ranges, each error one line that names
the entry and the fix. What is derived from the checked file (the generations, the images, the
evaluation's cells: the plan) lives in pipeline/spec.py; this module only reads and checks.

Pure Python, no torch: dodo.py loads the spec at start-up.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

from . import variants as variantsmod
from .spec import (CAPTION_FIELDS, DECODERS, LAYOUTS, MAX_SIZE, MIN_EVAL_SEEDS, MIN_SIZE,
                   OVERLAYS, PLOTS, SAMPLERS, SCHEDULES, VAE_PLOTS, Figure, Generation, Row, Spec,
                   SpecError)

_FIGURE_KEYS = {"id", "section", "caption", "cells", "cells_from", "rows", "toggle", "headings",
                "thumb", "layout", "prompt", "size", "variant", "seed", "plot", "sizes",
                "variants"}
_CELL_KEYS = {"prompt", "seed", "size", "variant"}
_ROW_KEYS = {"decoder", "overlay", "toggle"}
_SAMPLING_KEYS = {"steps", "sampler", "schedule", "sigma_max", "sigma_min", "rho", "guidance",
                  "negative_prompt"}
_APPROX_KEYS = {"hidden", "epochs", "lr", "seed", "size", "train", "heldout"}
_PROBE_KEYS = {"step", "prompt", "seeds", "sizes", "variants", "layer", "bins", "log_min"}
_VAE_KEYS = {"size", "subject", "floor_margin", "robust_z", "perturbation", "threshold"}
_EVAL_KEYS = {"prompts", "seed_start", "seeds", "default_seeds", "sizes", "variants", "thumb",
              "more", "sweeps"}
_EVAL_OPTIONAL = {"more", "sweeps"}


def _unknown_keys(where: str, got: dict, allowed: set[str]):
    extra = sorted(set(got) - allowed)
    if extra:
        raise SpecError(f"{where}: unknown field {extra[0]!r}; allowed fields are "
                        f"{', '.join(sorted(allowed))}")


def _number(where: str, table: dict, key: str, lo: float, hi: float, integer: bool = False):
    """Check that table[key] is a number (an integer where `integer`) in lo..hi."""
    v = table[key]
    kinds = (int,) if integer else (int, float)
    if not isinstance(v, kinds) or isinstance(v, bool) or not lo <= v <= hi:
        kind = "an integer" if integer else "a number"
        raise SpecError(f"{where}: {key} = {v!r} must be {kind} in {lo:g}..{hi:g}")
    return v


def _section(where: str, raw: dict) -> int:
    section = raw.get("section", 0)
    if not isinstance(section, int) or isinstance(section, bool) or not 0 <= section <= 99:
        raise SpecError(f"{where}: section {section!r} must be a whole number (the article "
                        f"section the figure belongs to), e.g. section = 2")
    return section


def _caption_fields(where: str, caption: str, allowed: tuple[str, ...]) -> None:
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(caption) if f is not None]
    except ValueError as exc:
        raise SpecError(f"{where}: caption is not a valid template ({exc}); write a literal "
                        f"brace as {{{{ or }}}}") from None
    for f in fields:
        if f not in allowed:
            known = f"; use one of {', '.join(allowed)}" if allowed else (
                "; only the VAE analysis plots have measured numbers to quote")
            raise SpecError(f"{where}: caption placeholder {{{f}}} is not a measured number{known}")


def _size(where: str, value) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        w = h = value
    elif (isinstance(value, list) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        w, h = value
    else:
        raise SpecError(f"{where}: size {value!r} must be an integer (square) or [width, height]")
    for v in (w, h):
        if v % 8:
            lo, hi = v - v % 8, v - v % 8 + 8
            raise SpecError(f"{where}: size {v} is not a multiple of 8 (the VAE's pixel-to-latent "
                            f"factor); use {lo} or {hi}")
        if not MIN_SIZE <= v <= MAX_SIZE:
            raise SpecError(f"{where}: size {v} is outside {MIN_SIZE}..{MAX_SIZE}; pick a size "
                            f"in that range")
    return w, h


def _generation(where: str, cell: dict, defaults: dict, prompts: dict,
                variants: dict | None = None) -> Generation:
    merged = {**defaults, **cell}
    for key in ("prompt", "seed", "size"):
        if key not in merged:
            raise SpecError(f"{where}: no {key!r}; give it in the cell or as the figure's default")
    prompt = merged["prompt"]
    if prompt not in prompts:
        raise SpecError(f"{where}: unknown prompt key {prompt!r}; known keys are "
                        f"{', '.join(sorted(prompts))} (add it under [prompts] first)")
    seed = merged["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise SpecError(f"{where}: seed {seed!r} must be an integer in 0..2^63-1")
    known = variants or {variantsmod.USUAL: {}}
    variant = merged.get("variant", variantsmod.USUAL)
    if not isinstance(variant, str) or variant not in known:
        raise SpecError(f"{where}: unknown variant {variant!r}; use one of {', '.join(known)} "
                        f"(or declare it as a [variant.{variant}] table)")
    w, h = _size(where, merged["size"])
    return Generation(prompt, seed, w, h, variant)


def _thumb(where: str, raw: dict) -> int:
    thumb = raw.get("thumb", 75)
    if not isinstance(thumb, int) or not 16 <= thumb <= 1024:
        raise SpecError(f"{where}: thumb {thumb!r} must be a width in px between 16 and 1024")
    return thumb


def _caption(where: str, raw: dict) -> str:
    if not isinstance(raw.get("caption", ""), str) or not raw.get("caption"):
        raise SpecError(f"{where}: needs a caption")
    _caption_fields(where, raw["caption"], CAPTION_FIELDS if raw.get("plot") in VAE_PLOTS else ())
    return raw["caption"]


def _variants(where: str, value, allowed) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise SpecError(f"{where}: variants must be a non-empty list of variant names")
    for v in value:
        if v not in allowed:
            raise SpecError(f"{where}: unknown variant {v!r}; use one of "
                            f"{', '.join(allowed)} (or declare it as a [variant.{v}] table)")
    if len(set(value)) != len(value):
        raise SpecError(f"{where}: a variant is listed twice")
    return tuple(value)


def _sizes(where: str, value, allowed=None) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list) or not value:
        raise SpecError(f"{where}: sizes must be a non-empty list of sizes")
    sizes = tuple(_size(where, v) for v in value)
    for s in sizes:
        if allowed is not None and s not in allowed:
            raise SpecError(f"{where}: size {s[0]}x{s[1]} is not one the [probe] measures; add "
                            f"it to [probe] sizes")
    return sizes


def _probe(where: str, raw: dict, sampling: dict, prompts: dict, variants: dict) -> dict:
    _unknown_keys(where, raw, _PROBE_KEYS)
    missing = sorted(_PROBE_KEYS - set(raw))
    if missing:
        raise SpecError(f"{where}: missing {missing[0]!r}")
    step = raw["step"]
    if not isinstance(step, int) or not 0 <= step < sampling["steps"]:
        raise SpecError(f"{where}: step {step!r} must be an integer in 0..{sampling['steps'] - 1} "
                        f"(a model evaluation of the {sampling['steps']}-step sampler)")
    if raw["prompt"] not in prompts:
        raise SpecError(f"{where}: unknown prompt key {raw['prompt']!r}; known keys are "
                        f"{', '.join(sorted(prompts))}")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in seeds):
        raise SpecError(f"{where}: seeds must be a non-empty list of integers in 0..2^63-1")
    _number(where, raw, "layer", 0, 1000, integer=True)
    _number(where, raw, "bins", 2, 10000, integer=True)
    _number(where, raw, "log_min", -1000, -1e-6)  # natural log of a probability
    # the probe reads each self-attention layer's weights: it measures attention rules only
    probed = [v for v, d in variants.items() if d["kind"] in ("usual", "attention")]
    return {**raw, "sizes": _sizes(where, raw["sizes"]),
            "variants": _variants(where, raw["variants"], probed)}


def _vae_anomaly(where: str, raw: dict, prompts: dict) -> dict:
    _unknown_keys(where, raw, _VAE_KEYS)
    missing = sorted(_VAE_KEYS - set(raw))
    if missing:
        raise SpecError(f"{where}: missing {missing[0]!r}")
    size = _size(where, raw["size"])
    subject = _generation(f"{where} subject", raw["subject"], {"size": raw["size"]}, prompts)
    for key, lo, hi in (("floor_margin", 0, 100), ("robust_z", 1, 1000), ("perturbation", 0, 100),
                        ("threshold", 0, 1)):
        _number(where, raw, key, lo, hi)
    return {**raw, "size": size, "subject": {"prompt": subject.prompt, "seed": subject.seed}}


def _evaluation(where: str, raw: dict, prompts: dict, variants: dict) -> dict:
    _unknown_keys(where, raw, _EVAL_KEYS)
    missing = sorted(_EVAL_KEYS - _EVAL_OPTIONAL - set(raw))
    if missing:
        raise SpecError(f"{where}: missing {missing[0]!r}")
    if not isinstance(raw["prompts"], list) or not raw["prompts"]:
        raise SpecError(f"{where}: prompts must be a non-empty list of prompt keys")
    for key in raw["prompts"]:
        if key not in prompts:
            raise SpecError(f"{where}: unknown prompt key {key!r}; known keys are "
                            f"{', '.join(sorted(prompts))}")
    _number(where, raw, "seed_start", 0, 2**62, integer=True)
    _number(where, raw, "seeds", MIN_EVAL_SEEDS, 100_000, integer=True)
    _number(where, raw, "default_seeds", 1, raw["seeds"], integer=True)
    _number(where, raw, "thumb", 16, 512, integer=True)
    groups = [{"sizes": _sizes(where, raw["sizes"]),
               "variants": _variants(where, raw["variants"], variants)}]
    more = raw.get("more", [])
    if not isinstance(more, list):
        raise SpecError(f"{where}: more must be a list of {{ sizes, variants }}")
    for i, group in enumerate(more):
        at = f"{where} more {i + 1}"
        if not isinstance(group, dict):
            raise SpecError(f"{at}: each entry is {{ sizes = [...], variants = [...] }}")
        _unknown_keys(at, group, {"sizes", "variants"})
        if set(group) != {"sizes", "variants"}:
            raise SpecError(f"{at}: give both sizes and variants")
        groups.append({"sizes": _sizes(at, group["sizes"]),
                       "variants": _variants(at, group["variants"], variants)})
    sweeps = raw.get("sweeps", [])
    if not isinstance(sweeps, list):
        raise SpecError(f"{where}: sweeps must be a list of {{ title, axis, size, variants }}")
    checked = []
    for i, sweep in enumerate(sweeps):
        at = f"{where} sweep {i + 1}"
        if not isinstance(sweep, dict):
            raise SpecError(f"{at}: each sweep is {{ title, axis, size, variants }}")
        _unknown_keys(at, sweep, {"title", "axis", "size", "variants"})
        missing = sorted({"title", "axis", "size", "variants"} - set(sweep))
        if missing:
            raise SpecError(f"{at}: missing {missing[0]!r}")
        for key in ("title", "axis"):
            if not isinstance(sweep[key], str) or not sweep[key]:
                raise SpecError(f"{at}: {key} must be a non-empty string")
        size = _size(at, sweep["size"])
        shown = _variants(at, sweep["variants"], variants)
        checked.append({**sweep, "size": size, "variants": shown})
        groups.append({"sizes": (size,), "variants": shown})  # a sweep's cells are measured
    for i, group in enumerate(groups[1:]):  # every variant is compared with the usual UNet
        lacking = [s for s in group["sizes"] if s not in groups[0]["sizes"]]
        if lacking:
            raise SpecError(f"{where} more {i + 1}: size {lacking[0][0]}x{lacking[0][1]} is not "
                            f"in [evaluation] sizes, so nothing there compares with the usual "
                            f"UNet; add it to sizes")
    if variantsmod.USUAL not in groups[0]["variants"]:
        raise SpecError(f"{where}: variants must include \"usual\" (every variant is compared "
                        f"with it on the same seeds)")
    return {**raw, "sizes": groups[0]["sizes"], "variants": groups[0]["variants"],
            "more": groups[1:], "sweeps": checked}


def _plot_figure(where: str, raw: dict, probe: dict | None, vae: dict | None) -> Figure:
    if raw["plot"] not in PLOTS:
        raise SpecError(f"{where}: unknown plot {raw['plot']!r}; use one of {', '.join(PLOTS)}")
    if raw["plot"] in VAE_PLOTS:
        extra = sorted(set(raw) - {"id", "section", "caption", "plot", "thumb", "toggle"})
        if extra:
            raise SpecError(f"{where}: a {raw['plot']} plot takes no {extra[0]!r}; its data come "
                            f"from [vae_anomaly]")
        if vae is None:
            raise SpecError(f"{where}: a {raw['plot']} plot needs a [vae_anomaly] table")
        return Figure(id=raw["id"], section=_section(where, raw),
                      caption=_caption(where, raw), cells=(), rows=(), layout="plot",
                      toggle=raw.get("toggle"), thumb=_thumb(where, raw), plot=raw["plot"])
    if probe is None:
        raise SpecError(f"{where}: a plot figure needs a [probe] table to measure its data")
    extra = sorted(set(raw) & {"cells", "cells_from", "rows", "layout", "prompt", "seed", "size",
                               "variant"})
    if extra:
        raise SpecError(f"{where}: a plot figure takes no {extra[0]!r}; its data come from [probe]")
    sizes = _sizes(where, raw["sizes"], probe["sizes"]) if "sizes" in raw else probe["sizes"]
    variants = (_variants(where, raw["variants"], probe["variants"]) if "variants" in raw
                else probe["variants"])
    return Figure(id=raw["id"], section=_section(where, raw), caption=_caption(where, raw),
                  cells=(), rows=(), layout="plot", toggle=raw.get("toggle"),
                  thumb=_thumb(where, raw), plot=raw["plot"],
                  sizes=sizes, variants=variants)


def parse(data: dict, path: Path) -> Spec:
    name = path.name
    for table in ("sampling", "prompts", "approx_decoder", "figure"):
        if table not in data:
            raise SpecError(f"{name}: missing [{table}] table; see the comments in figures.toml")
    sampling = data["sampling"]
    _unknown_keys(f"{name} [sampling]", sampling, _SAMPLING_KEYS)
    missing = sorted(_SAMPLING_KEYS - set(sampling))
    if missing:
        raise SpecError(f"{name} [sampling]: missing {missing[0]!r}")
    if sampling["sampler"] not in SAMPLERS:
        raise SpecError(f"{name} [sampling]: unknown sampler {sampling['sampler']!r}; use one of "
                        f"{', '.join(SAMPLERS)}")
    if sampling["schedule"] not in SCHEDULES:
        raise SpecError(f"{name} [sampling]: unknown schedule {sampling['schedule']!r}; use one "
                        f"of {', '.join(SCHEDULES)}")
    where = f"{name} [sampling]"
    _number(where, sampling, "steps", 2, 1000, integer=True)
    for key in ("sigma_min", "sigma_max"):
        _number(where, sampling, key, 1e-6, 1e4)
    _number(where, sampling, "rho", 0.1, 100)
    _number(where, sampling, "guidance", 0, 100)  # 1 = no guidance; SD's usual is 7.5
    if not isinstance(sampling["negative_prompt"], str):
        raise SpecError(f"{where}: negative_prompt must be a string (\"\" for the empty prompt)")
    if not sampling["sigma_min"] < sampling["sigma_max"]:
        raise SpecError(f"{where}: need sigma_min < sigma_max")

    prompts = data["prompts"]
    for key, text in prompts.items():
        if not isinstance(text, str) or not text.strip():
            raise SpecError(f"{name} [prompts]: prompt {key!r} must be a non-empty string")
        if not key.replace("_", "").isalnum():
            raise SpecError(f"{name} [prompts]: prompt key {key!r} must be letters, digits and _")

    try:
        variants = variantsmod.load(data.get("variant", {}))
    except variantsmod.VariantError as err:
        raise SpecError(f"{name} {err}") from None
    probe = (_probe(f"{name} [probe]", data["probe"], sampling, prompts, variants)
             if "probe" in data else None)
    vae = (_vae_anomaly(f"{name} [vae_anomaly]", data["vae_anomaly"], prompts)
           if "vae_anomaly" in data else None)

    evaluation = (_evaluation(f"{name} [evaluation]", data["evaluation"], prompts, variants)
                  if "evaluation" in data else None)

    raw_figs = data["figure"]
    by_id: dict[str, dict] = {}
    for i, raw in enumerate(raw_figs):
        fid = raw.get("id")
        where = f"{name} figure #{i + 1}" + (f" {fid!r}" if fid else "")
        if not isinstance(fid, str) or not fid:
            raise SpecError(f"{where}: every [[figure]] needs an id")
        if not all(c.isalnum() or c == "-" for c in fid):
            raise SpecError(f"{where}: id must be letters, digits and '-'")
        if fid in by_id:
            first = list(by_id).index(fid) + 1
            raise SpecError(f"{name}: figures #{first} and #{i + 1} share the id {fid!r}; figure "
                            f"ids must be unique, rename one of them")
        _unknown_keys(where, raw, _FIGURE_KEYS)
        by_id[fid] = raw

    figures = []
    for i, raw in enumerate(raw_figs):
        fid = raw["id"]
        where = f"{name} figure {fid!r}"
        defaults = {k: raw[k] for k in ("prompt", "size", "variant", "seed") if k in raw}
        if "plot" in raw:
            figures.append(_plot_figure(where, raw, probe, vae))
            continue
        layout = raw.get("layout", "grid")
        shown: tuple[str, ...] = ()
        if layout == "compare":
            shown = _variants(where, raw.get("variants"), variants)
            if "variant" in defaults:
                raise SpecError(f"{where}: a compare figure takes its variants from `variants`")
        elif "variants" in raw:
            raise SpecError(f"{where}: `variants` only applies to layout = \"compare\"")
        if "cells_from" in raw:
            if "cells" in raw:
                raise SpecError(f"{where}: give either cells or cells_from, not both")
            src = by_id.get(raw["cells_from"])
            if src is None or "cells_from" in src:
                raise SpecError(f"{where}: cells_from {raw['cells_from']!r} must name a figure "
                                f"that lists its own cells")
            defaults = {k: src[k] for k in ("prompt", "size", "variant", "seed") if k in src}
            raw_cells = src.get("cells", [])
        else:
            raw_cells = raw.get("cells", [])
        if not raw_cells:
            raise SpecError(f"{where}: no cells; list at least one {{ prompt, seed }}")
        cells = []
        for j, cell in enumerate(raw_cells):
            _unknown_keys(f"{where} cell {j + 1}", cell, _CELL_KEYS)
            if shown:
                if "variant" in cell:
                    raise SpecError(f"{where} cell {j + 1}: a compare figure takes its variants "
                                    f"from `variants`, not from the cell")
                cells += [_generation(f"{where} cell {j + 1}", {**cell, "variant": v}, defaults,
                                      prompts, variants) for v in shown]
            else:
                cells.append(_generation(f"{where} cell {j + 1}", cell, defaults, prompts,
                                         variants))
        if len(set(cells)) != len(cells):
            raise SpecError(f"{where}: the same generation appears twice in its cells")
        rows = []
        for j, r in enumerate(raw.get("rows", [])):
            _unknown_keys(f"{where} row {j + 1}", r, _ROW_KEYS)
            if r.get("decoder") not in DECODERS:
                raise SpecError(f"{where} row {j + 1}: unknown decoder {r.get('decoder')!r}; use "
                                f"one of {', '.join(DECODERS)}")
            if r.get("overlay") is not None and r["overlay"] not in OVERLAYS:
                raise SpecError(f"{where} row {j + 1}: unknown overlay {r['overlay']!r}; use one "
                                f"of {', '.join(OVERLAYS)}")
            rows.append(Row(r["decoder"], r.get("overlay"), r.get("toggle")))
        if not rows:
            raise SpecError(f"{where}: no rows; add rows = [{{ decoder = \"vae\" }}]")
        if shown and len(rows) != 1:
            raise SpecError(f"{where}: a compare figure has exactly one row (one decoder)")
        if layout not in LAYOUTS or layout == "plot":
            raise SpecError(f"{where}: unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
        if raw.get("headings") not in (None, "size"):
            raise SpecError(f"{where}: headings may only be \"size\"")
        figures.append(Figure(id=fid, section=_section(where, raw),
                              caption=_caption(where, raw), cells=tuple(cells), rows=tuple(rows),
                              layout=layout, toggle=raw.get("toggle"),
                              headings=raw.get("headings"), thumb=_thumb(where, raw),
                              variants=shown))

    approx = data["approx_decoder"]
    _unknown_keys(f"{name} [approx_decoder]", approx, _APPROX_KEYS)
    missing = sorted(_APPROX_KEYS - set(approx))
    if missing:
        raise SpecError(f"{name} [approx_decoder]: missing {missing[0]!r}")
    where = f"{name} [approx_decoder]"
    _number(where, approx, "hidden", 1, 4096, integer=True)
    _number(where, approx, "epochs", 1, 1_000_000, integer=True)
    _number(where, approx, "lr", 1e-8, 10)
    _number(where, approx, "seed", 0, 2**63 - 1, integer=True)
    for part in ("train", "heldout"):
        if not isinstance(approx[part], list):
            raise SpecError(f"{where}: {part} must be a list of {{ prompt, seed }}")
    spec = Spec(path=path, sampling=sampling, prompts=prompts, approx=approx, figures=figures,
                probe=probe, vae_anomaly=vae, evaluation=evaluation, variants=variants)
    if vae is not None:
        if spec.vae_anomaly_subject() not in {im.gen for im in spec.vae_anomaly_images()}:
            raise SpecError(f"{name} [vae_anomaly]: subject {vae['subject']} at "
                            f"{vae['size'][0]}x{vae['size'][1]} has no VAE decode in any figure; "
                            f"pick a generation a figure shows with the VAE at that size")
    article_seeds = {g.seed for g in spec.article_generations()}
    for part in ("train", "heldout"):
        gens = []
        for j, cell in enumerate(approx[part]):
            where = f"{name} [approx_decoder] {part} {j + 1}"
            _unknown_keys(where, cell, _CELL_KEYS)
            g = _generation(where, cell, {"size": approx["size"]}, prompts)
            if g.seed in article_seeds:
                raise SpecError(f"{where}: seed {g.seed} is also shown in the article; the "
                                f"decoder's data must be held apart, pick another seed")
            gens.append(g)
        if not gens:
            raise SpecError(f"{name} [approx_decoder]: {part} needs at least one generation")
        setattr(spec, f"approx_{part}", gens)
    if evaluation is not None:
        e = evaluation
        span = range(e["seed_start"], e["seed_start"] + e["seeds"])
        shown = article_seeds | {g.seed for g in spec.approx_train + spec.approx_heldout}
        shown |= set(probe["seeds"]) if probe else set()
        clash = sorted(s for s in shown if s in span)
        if clash:
            raise SpecError(f"{name} [evaluation]: seed {clash[0]} is in its range "
                            f"{span.start}..{span.stop - 1} and is also used elsewhere; the "
                            f"evaluation's seeds must be held apart, move seed_start")
    if set(spec.approx_train) & set(spec.approx_heldout):
        raise SpecError(f"{name} [approx_decoder]: a generation is in both train and heldout; "
                        f"held-out data must not be trained on")
    return spec


def load(path: str | Path = "figures.toml") -> Spec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such figure specification; run from the project root or "
                        f"pass spec=<path>")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path.name}: not valid TOML ({exc}); fix the syntax") from None
    return parse(data, path)
