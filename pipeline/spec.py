"""The figure specification: load figures.toml, check it, and derive what every stage needs.

Pure Python, no torch: dodo.py imports this at load time, and `doit list` must stay fast.

A Generation is one denoising run (prompt, seed, size, attention). An Image is one decode of a
generation (decoder, optional overlay). A Figure lays images out in rows (one per decoder) and
columns (one per cell); a "compare" figure puts each cell's attention variants side by side; a
plot figure shows one plot of the attention statistics that [probe] measures. Every file name in
the pipeline is derived here, once.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# The vocabularies the stages implement. Each stage module keys its registry by these names and
# tests/test_spec.py checks that they agree.
DECODERS = ("vae", "approx")
OVERLAYS = ("kernel_footprint",)
ATTENTION = ("usual", "logit-scale", "topk-denominator", "topk-mask")
LAYOUTS = ("grid", "table", "compare", "plot")
PROBE_PLOTS = ("entropy", "logprob")      # drawn from the [probe] statistics
VAE_PLOTS = ("logvar", "perturbation")     # drawn from the [vae_anomaly] analysis
PLOTS = PROBE_PLOTS + VAE_PLOTS
SAMPLERS = ("dpmpp_2m",)
SCHEDULES = ("karras",)

MIN_SIZE, MAX_SIZE = 64, 4096

_FIGURE_KEYS = {"id", "section", "caption", "cells", "cells_from", "rows", "toggle", "headings",
                "thumb", "layout", "prompt", "size", "attention", "seed", "plot", "sizes",
                "variants"}
_CELL_KEYS = {"prompt", "seed", "size", "attention"}
_ROW_KEYS = {"decoder", "overlay", "toggle"}
_SAMPLING_KEYS = {"steps", "sampler", "schedule", "sigma_max", "sigma_min", "rho", "guidance",
                  "negative_prompt"}
_APPROX_KEYS = {"hidden", "epochs", "lr", "seed", "size", "train", "heldout"}
_PROBE_KEYS = {"step", "prompt", "seeds", "sizes", "variants", "layer", "bins", "log_min"}
_VAE_KEYS = {"size", "subject", "floor_margin", "robust_z", "perturbation", "threshold"}
_EVAL_KEYS = {"prompts", "seed_start", "seeds", "default_seeds", "sizes", "variants", "thumb"}
MIN_EVAL_SEEDS = 32  # the full evaluation: at least this many generations per (size, variant)

# The measured numbers a caption may quote as {placeholders} (pipeline/emit.py's vae_summary
# fills them; tests/test_stages.py checks that the two agree). Only VAE-analysis plots have them.
CAPTION_FIELDS = ("threshold", "images", "flagged_images", "floor", "ceiling", "floor_margin",
                  "robust_z", "size", "subject_flagged", "vae",
                  "scaling_factor", "perturbation", "spot", "anomalous_changed", "anomalous_mean",
                  "anomalous_logvar", "ordinary_changed", "ordinary_mean", "ordinary_logvar",
                  "ratio")


class SpecError(ValueError):
    """A problem in figures.toml, phrased as one line that names the entry and the fix."""


@dataclass(frozen=True, order=True)
class Generation:
    prompt: str
    seed: int
    width: int
    height: int
    attention: str = "usual"

    @property
    def id(self) -> str:
        return f"{self.prompt}-{self.seed}-{self.width}x{self.height}-{self.attention}"

    @property
    def size_key(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def probe_file(self) -> str:
        """The probe stage's statistics for this generation, relative to its directory."""
        return f"{self.id}.json"

    @property
    def sheet_file(self) -> str:
        """The evaluation's contact sheet of every generation of this size and attention."""
        return f"eval.{self.size_key}.{self.attention}.png"


class _Shown:
    """Something a figure shows: a PNG named after it, and its thumbnails."""
    name: str

    @property
    def file(self) -> str:
        """Path relative to the images directory."""
        return f"{self.name}.png"

    def thumb_file(self, width: int) -> str:
        return f"{self.name}.w{width}.png"


@dataclass(frozen=True)
class Image(_Shown):
    gen: Generation
    decoder: str
    overlay: str | None = None

    @property
    def name(self) -> str:
        suffix = f".{self.overlay}" if self.overlay else ""
        return f"{self.gen.id}.{self.decoder}{suffix}"


@dataclass(frozen=True)
class Plot(_Shown):
    """A plot drawn by pipeline/plots.py (attention statistics, VAE analysis)."""
    figure: str

    @property
    def name(self) -> str:
        return f"plot.{self.figure}"


# The evaluation's plot (pipeline/plots.py `evaluation`) and the width of its thumbnail.
EVALUATION_PLOT = Plot("evaluation")
EVALUATION_PLOT_THUMB = 720


@dataclass(frozen=True)
class Row:
    decoder: str
    overlay: str | None = None
    toggle: str | None = None


@dataclass(frozen=True)
class Figure:
    id: str
    section: int
    caption: str
    cells: tuple[Generation, ...]
    rows: tuple[Row, ...]
    layout: str = "grid"
    toggle: str | None = None
    headings: str | None = None
    thumb: int = 75
    variants: tuple[str, ...] = ()   # "compare" and "plot": the attention variants shown
    plot: str | None = None          # "plot": which plot of the probe statistics
    sizes: tuple[tuple[int, int], ...] = ()  # "plot": the image sizes it shows

    def images(self):
        for row in self.rows:
            for gen in self.cells:
                yield Image(gen, row.decoder, row.overlay)

    def files(self) -> list:
        """Everything this figure shows, as Image or Plot (each knows its file names)."""
        return [Plot(self.id)] if self.plot else list(self.images())

    def compare_rows(self) -> list[list[Generation]]:
        """"compare" layout: one row per base cell, one column per variant."""
        k = len(self.variants)
        return [list(self.cells[i:i + k]) for i in range(0, len(self.cells), k)]


@dataclass
class Spec:
    path: Path
    sampling: dict
    prompts: dict[str, str]
    approx: dict
    figures: list[Figure]
    approx_train: list[Generation] = field(default_factory=list)
    approx_heldout: list[Generation] = field(default_factory=list)
    probe: dict | None = None
    vae_anomaly: dict | None = None
    evaluation: dict | None = None

    # --- derived views -------------------------------------------------------------------------
    def figure(self, fid: str) -> Figure:
        for f in self.figures:
            if f.id == fid:
                return f
        raise KeyError(fid)

    def article_generations(self) -> list[Generation]:
        """Unique generations the figures show, in a stable order."""
        return sorted({g for f in self.figures for g in f.cells})

    def all_generations(self) -> list[Generation]:
        return sorted(set(self.article_generations()) | set(self.approx_train)
                      | set(self.approx_heldout))

    def images(self) -> list[Image]:
        """Unique full-size images the figures show (decodes and overlays)."""
        seen: dict[str, Image] = {}
        for f in self.figures:
            for im in f.images():
                seen.setdefault(im.name, im)
        return [seen[k] for k in sorted(seen)]

    def decodes(self) -> list[Image]:
        """Unique plain decodes (no overlay): what the decode stage writes."""
        plain = {Image(im.gen, im.decoder).name: Image(im.gen, im.decoder) for im in self.images()}
        return [plain[k] for k in sorted(plain)]

    def thumbs(self) -> list[tuple[Image | Plot, int]]:
        pairs = {(im.thumb_file(f.thumb)): (im, f.thumb) for f in self.figures for im in f.files()}
        return [pairs[k] for k in sorted(pairs)]

    def plots(self) -> list[Figure]:
        return [f for f in self.figures if f.plot]

    def probe_generations(self) -> list[Generation]:
        """What the probe stage samples (to its step only): every size x variant x seed."""
        p = self.probe
        if not p:
            return []
        return sorted(Generation(p["prompt"], seed, w, h, v) for w, h in p["sizes"]
                      for v in p["variants"] for seed in p["seeds"])

    def plot_generations(self, fig: Figure) -> list[Generation]:
        """The probed generations a probe plot draws from (its sizes x variants x seeds)."""
        return [g for g in self.probe_generations()
                if (g.width, g.height) in fig.sizes and g.attention in fig.variants]

    def probe_by_size(self) -> dict[str, list[Generation]]:
        out: dict[str, list[Generation]] = {}
        for g in self.probe_generations():
            out.setdefault(g.size_key, []).append(g)
        return out

    def vae_anomaly_images(self) -> list[Image]:
        """The article's VAE decodes at the [vae_anomaly] size: what the analysis encodes."""
        size = self.vae_anomaly["size"]
        return [im for im in self.decodes()
                if im.decoder == "vae" and (im.gen.width, im.gen.height) == size]

    def vae_anomaly_subject(self) -> Generation:
        s = self.vae_anomaly
        return Generation(s["subject"]["prompt"], s["subject"]["seed"], *s["size"])

    def probe_config(self) -> dict:
        """What the probe statistics depend on besides each generation's recipe."""
        return {k: v for k, v in (self.probe or {}).items()
                if k in ("step", "layer", "bins", "log_min")}

    def by_size(self, extra: tuple[Generation, ...] | list[Generation] = ()) -> dict[str, list[Generation]]:
        """What each `sample:<size>` task samples: every generation the figures and the
        approximate decoder need, and `extra` ones (the evaluation's)."""
        out: dict[str, list[Generation]] = {}
        for g in sorted(set(self.all_generations()) | set(extra)):
            out.setdefault(g.size_key, []).append(g)
        return out

    def evaluation_cells(self, seeds: int, geometry: dict) -> dict[tuple, list[Generation]]:
        """The evaluation's cells, ((width, height), variant) -> the generations whose images it measures:
        generation i is prompts[i % len(prompts)] with seed seed_start + i, for i < seeds. A
        variant that is exactly the model's own attention at that size (by the model's `geometry`,
        pipeline/geometry.py) measures the usual attention's generations (sampled once)."""
        from .geometry import same_as_usual

        e = self.evaluation
        if not e or seeds < 1:
            return {}
        cells = {}
        for w, h in e["sizes"]:
            for v in e["variants"]:
                attention = "usual" if same_as_usual(geometry, v, w, h) else v
                cells[((w, h), v)] = [Generation(e["prompts"][i % len(e["prompts"])],
                                            e["seed_start"] + i, w, h, attention)
                                 for i in range(seeds)]
        return cells

    def evaluation_generations(self, seeds: int, geometry: dict) -> list[Generation]:
        """Every generation the evaluation samples, once."""
        cells = self.evaluation_cells(seeds, geometry)
        return sorted({g for gens in cells.values() for g in gens})

    def recipe(self, gen: Generation) -> dict:
        """Everything that determines a generation's latents, apart from the model and device."""
        s = self.sampling
        return {"prompt_key": gen.prompt, "prompt": self.prompts[gen.prompt],
                "negative_prompt": s["negative_prompt"], "seed": gen.seed, "width": gen.width,
                "height": gen.height, "attention": gen.attention, "steps": s["steps"],
                "sampler": s["sampler"], "schedule": s["schedule"], "sigma_max": s["sigma_max"],
                "sigma_min": s["sigma_min"], "rho": s["rho"], "guidance": s["guidance"]}

    def approx_config(self) -> dict:
        a = self.approx
        return {"hidden": a["hidden"], "epochs": a["epochs"], "lr": a["lr"], "seed": a["seed"],
                "train": [g.id for g in self.approx_train],
                "heldout": [g.id for g in self.approx_heldout]}


def digest(obj) -> str:
    """Short stable hash of a JSON-able object (used in config_changed and file metadata)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --- loading and checking ----------------------------------------------------------------------

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


def _generation(where: str, cell: dict, defaults: dict, prompts: dict) -> Generation:
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
    attention = merged.get("attention", "usual")
    if not isinstance(attention, str) or attention not in ATTENTION:
        raise SpecError(f"{where}: unknown attention variant {attention!r}; use one of "
                        f"{', '.join(ATTENTION)}")
    w, h = _size(where, merged["size"])
    return Generation(prompt, seed, w, h, attention)


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


def _variants(where: str, value, allowed=ATTENTION) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise SpecError(f"{where}: variants must be a non-empty list of attention variants")
    for v in value:
        if v not in allowed:
            raise SpecError(f"{where}: unknown attention variant {v!r}; use one of "
                            f"{', '.join(allowed)}")
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


def _probe(where: str, raw: dict, sampling: dict, prompts: dict) -> dict:
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
    return {**raw, "sizes": _sizes(where, raw["sizes"]),
            "variants": _variants(where, raw["variants"])}


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


def _evaluation(where: str, raw: dict, prompts: dict) -> dict:
    _unknown_keys(where, raw, _EVAL_KEYS)
    missing = sorted(_EVAL_KEYS - set(raw))
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
    return {**raw, "sizes": _sizes(where, raw["sizes"]),
            "variants": _variants(where, raw["variants"])}


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
                               "attention"})
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

    probe = _probe(f"{name} [probe]", data["probe"], sampling, prompts) if "probe" in data else None
    vae = (_vae_anomaly(f"{name} [vae_anomaly]", data["vae_anomaly"], prompts)
           if "vae_anomaly" in data else None)

    evaluation = (_evaluation(f"{name} [evaluation]", data["evaluation"], prompts)
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
        defaults = {k: raw[k] for k in ("prompt", "size", "attention", "seed") if k in raw}
        if "plot" in raw:
            figures.append(_plot_figure(where, raw, probe, vae))
            continue
        layout = raw.get("layout", "grid")
        variants: tuple[str, ...] = ()
        if layout == "compare":
            variants = _variants(where, raw.get("variants"))
            if "attention" in defaults:
                raise SpecError(f"{where}: a compare figure takes its attention from `variants`")
        elif "variants" in raw:
            raise SpecError(f"{where}: `variants` only applies to layout = \"compare\"")
        if "cells_from" in raw:
            if "cells" in raw:
                raise SpecError(f"{where}: give either cells or cells_from, not both")
            src = by_id.get(raw["cells_from"])
            if src is None or "cells_from" in src:
                raise SpecError(f"{where}: cells_from {raw['cells_from']!r} must name a figure "
                                f"that lists its own cells")
            defaults = {k: src[k] for k in ("prompt", "size", "attention", "seed") if k in src}
            raw_cells = src.get("cells", [])
        else:
            raw_cells = raw.get("cells", [])
        if not raw_cells:
            raise SpecError(f"{where}: no cells; list at least one {{ prompt, seed }}")
        cells = []
        for j, cell in enumerate(raw_cells):
            _unknown_keys(f"{where} cell {j + 1}", cell, _CELL_KEYS)
            if variants:
                if "attention" in cell:
                    raise SpecError(f"{where} cell {j + 1}: a compare figure takes its attention "
                                    f"from `variants`, not from the cell")
                cells += [_generation(f"{where} cell {j + 1}", {**cell, "attention": v}, defaults,
                                      prompts) for v in variants]
            else:
                cells.append(_generation(f"{where} cell {j + 1}", cell, defaults, prompts))
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
        if variants and len(rows) != 1:
            raise SpecError(f"{where}: a compare figure has exactly one row (one decoder)")
        if layout not in LAYOUTS or layout == "plot":
            raise SpecError(f"{where}: unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
        if raw.get("headings") not in (None, "size"):
            raise SpecError(f"{where}: headings may only be \"size\"")
        figures.append(Figure(id=fid, section=_section(where, raw),
                              caption=_caption(where, raw), cells=tuple(cells), rows=tuple(rows),
                              layout=layout, toggle=raw.get("toggle"),
                              headings=raw.get("headings"), thumb=_thumb(where, raw),
                              variants=variants))

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
                probe=probe, vae_anomaly=vae, evaluation=evaluation)
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
