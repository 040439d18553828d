"""The figure specification's plan: what every stage needs, derived from the checked figures.toml.

Pure Python, no torch: dodo.py imports this at load time, and `doit list` must stay fast. Reading
and checking the file is pipeline/schema.py's job (`load` below is its loader); this module holds
what the checked file means.

A Generation is one denoising run (prompt, seed, size, variant). A variant is a named,
training-free change to the UNet or the sampler declared as a [variant.<name>] table
(pipeline/variants.py); `usual` is the model as trained. An Image is one decode of a generation
(decoder, optional overlay). A Figure lays images out in rows (one per decoder) and columns (one
per cell); a "compare" figure puts each cell's variants side by side; a plot figure shows one
plot of the attention statistics that [probe] measures. Every file name in the pipeline is
derived here, once.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

# The vocabularies the stages implement. Each stage module keys its registry by these names and
# tests/test_spec.py checks that they agree.
DECODERS = ("vae", "approx")
OVERLAYS = ("kernel_footprint",)
LAYOUTS = ("grid", "table", "compare", "plot")
PROBE_PLOTS = ("entropy", "logprob")      # drawn from the [probe] statistics
VAE_PLOTS = ("logvar", "perturbation")     # drawn from the [vae_anomaly] analysis
PLOTS = PROBE_PLOTS + VAE_PLOTS
SAMPLERS = ("dpmpp_2m",)
SCHEDULES = ("karras",)

MIN_SIZE, MAX_SIZE = 64, 4096

MIN_EVAL_SEEDS = 32  # the full evaluation: at least this many generations per (size, variant)

# The measured numbers a caption may quote as {placeholders} (pipeline/emit.py's vae_summary
# fills them; tests/test_stages.py checks that the two agree). Only VAE-analysis plots have them.
CAPTION_FIELDS = ("threshold", "images", "flagged_images", "floor", "ceiling", "floor_margin",
                  "robust_z", "size", "subject_flagged", "vae",
                  "scaling_factor", "perturbation", "anomalous_changed", "anomalous_mean",
                  "anomalous_logvar", "ordinary_changed", "ordinary_mean", "ordinary_logvar",
                  "ratio", "lowest_logvar", "floor_key", "change_key", "global_share",
                  "global_ratio")


class SpecError(ValueError):
    """A problem in figures.toml, phrased as one line that names the entry and the fix."""


@dataclass(frozen=True, order=True)
class Generation:
    prompt: str
    seed: int
    width: int
    height: int
    variant: str = "usual"  # a [variant.*] name of figures.toml

    @property
    def id(self) -> str:
        return f"{self.prompt}-{self.seed}-{self.width}x{self.height}-{self.variant}"

    @property
    def size_key(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def probe_file(self) -> str:
        """The probe stage's statistics for this generation, relative to its directory."""
        return f"{self.id}.json"

    @property
    def sheet_file(self) -> str:
        """The evaluation's contact sheet of every generation of this size and variant."""
        return f"eval.{self.size_key}.{self.variant}.png"


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


# The evaluation's plots (pipeline/plots.py EVALUATION_PLOTS) and the width of their thumbnails.
EVALUATION_PLOT = Plot("evaluation")
SWEEPS_PLOT = Plot("evaluation-sweeps")
EVALUATION_PLOTS = (EVALUATION_PLOT, SWEEPS_PLOT)
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
    variants: tuple[str, ...] = ()   # "compare" and "plot": the variants shown
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
    variants: dict = field(default_factory=lambda: {"usual": {"kind": "usual"}})

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
                if (g.width, g.height) in fig.sizes and g.variant in fig.variants]

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
        """The evaluation's cells, ((width, height), variant) -> the generations whose images it
        measures: every [evaluation] size x variant, then each `more` group's and each sweep's.
        Generation i is prompts[i % len(prompts)] with seed seed_start + i, for i < seeds. A
        variant that is exactly the model's own UNet at that size (by the model's `geometry`,
        variants.is_identity) measures the usual generations (sampled once)."""
        from .variants import USUAL, is_identity

        e = self.evaluation
        if not e or seeds < 1:
            return {}
        cells = {}
        groups = [{"sizes": e["sizes"], "variants": e["variants"]}, *e.get("more", ()),
                  *({"sizes": (s["size"],), "variants": s["variants"]} for s in e.get("sweeps", ()))]
        for group in groups:
            for w, h in group["sizes"]:
                for v in group["variants"]:
                    sampled = USUAL if is_identity(self.variants, v, geometry, w, h) else v
                    cells[((w, h), v)] = [Generation(e["prompts"][i % len(e["prompts"])],
                                                     e["seed_start"] + i, w, h, sampled)
                                          for i in range(seeds)]
        return cells

    def evaluation_generations(self, seeds: int, geometry: dict) -> list[Generation]:
        """Every generation the evaluation samples, once."""
        cells = self.evaluation_cells(seeds, geometry)
        return sorted({g for gens in cells.values() for g in gens})

    def recipe(self, gen: Generation) -> dict:
        """Everything that determines a generation's latents, apart from the model and device:
        the variant by name and by what it does, so that editing its table resamples it."""
        from .variants import definition

        s = self.sampling
        return {"prompt_key": gen.prompt, "prompt": self.prompts[gen.prompt],
                "negative_prompt": s["negative_prompt"], "seed": gen.seed, "width": gen.width,
                "height": gen.height, "variant": gen.variant,
                "intervention": definition(self.variants, gen.variant), "steps": s["steps"],
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


from .schema import load, parse  # noqa: E402,F401 (reading and checking the file)
