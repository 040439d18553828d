"""doit tasks that rebuild every figure of the article and then the site.

    doit                                   # everything, with the embedded preview model
    doit model=<hub id or dir> device=cuda # the real SD 1.5 weights
    doit list                              # the tasks, one line each
    doit clean                             # remove what the tasks made

This file is wiring only: what exists comes from figures.toml (pipeline/spec.py), what each task
does lives in pipeline/. Nothing heavy is imported here, so `doit list` and an up-to-date `doit`
return in about a second; torch is imported inside the actions.
"""
import importlib
import sys
from pathlib import Path

from doit import get_var
from doit.task import clean_targets
from doit.tools import config_changed

from pipeline import documents, freeze, geometry, hugo, model, spec as specmod, variants
from pipeline import speedups as speedupsmod
from pipeline.files import prune, remove_stale_temps
from pipeline.progress import Reporter
from pipeline.spec import Image, digest

DOIT_CONFIG = {"default_tasks": ["hugo", "docs"], "dep_file": "build/.doit.db", "verbosity": 2,
               "reporter": Reporter,
               "action_string_formatting": "new"}

SPEC = get_var("spec", "figures.toml")
MODEL = get_var("model", model.PREVIEW)
DEVICE = get_var("device", "auto")
BATCH = get_var("batch", "auto")
VAE = get_var("vae", "model")  # the VAE the anomaly analysis examines (model = the model's own)
SPEEDUPS = get_var("speedups", "default")  # UNet speed-ups (pipeline/speedups.py): default, none, a+b

BUILD = Path("build")
LATENTS = BUILD / "latents"
PROBES = BUILD / "probe"
VAE_DIR = BUILD / "vae"
VAE_JSON = VAE_DIR / "anomaly.json"
VAE_MAPS = VAE_DIR / "maps.safetensors"
IMAGES = Path("static/images")
MODEL_JSON = BUILD / "model.json"
APPROX = BUILD / "approx" / "decoder.safetensors"
APPROX_JSON = APPROX.with_suffix(".json")
DATA = BUILD / "data" / "article.json"
MANIFEST = IMAGES / "manifest.json"
MEASURE = BUILD / "measure.json"
EVAL_JSON = BUILD / "eval" / "evaluation.json"
SITE_INDEX = Path("public/index.html")

try:
    if DEVICE not in ("auto", "cpu", "cuda") and not DEVICE.startswith("cuda:"):
        raise model.ModelError(f"device={DEVICE} is not a device this pipeline runs on; use "
                               f"device=auto, device=cpu, device=cuda or device=cuda:N")
    if BATCH != "auto" and not (BATCH.isdigit() and int(BATCH) > 0):
        raise model.ModelError(f"batch={BATCH} is not a batch size; use batch=auto or a "
                               f"positive whole number such as batch=4")
    try:  # the speed-up names for the device type, checked once
        SPEEDUP_NAMES = speedupsmod.parse(SPEEDUPS, freeze.device_type(DEVICE))
        SPEEDUPS = speedupsmod.arg(SPEEDUP_NAMES)  # what the tasks load: the names, resolved
    except ValueError as err:
        raise model.ModelError(f"speedups={SPEEDUPS}: {err}; or speedups=default, "
                               f"speedups=none") from None
    spec = specmod.load(SPEC)
    default_seeds = spec.evaluation["default_seeds"] if spec.evaluation else 0
    EVAL_SEEDS_ARG = get_var("eval_seeds", None)  # given: compute (and freeze a full run)
    EVAL_SEEDS = EVAL_SEEDS_ARG or str(default_seeds)
    if not (EVAL_SEEDS.isdigit() and (int(EVAL_SEEDS) > 0 or not spec.evaluation)):
        raise model.ModelError(f"eval_seeds={EVAL_SEEDS} is not a seed count; use a positive "
                               f"whole number, e.g. eval_seeds={spec.evaluation['seeds']} for "
                               f"the full evaluation")
    model_ref = model.resolve(MODEL)
    model.check_vae_arg(VAE)
    if model_ref.preview and "train" not in sys.argv[1:]:
        model.check_shipped()
except (specmod.SpecError, model.ModelError) as err:
    sys.exit(f"error: {err}")
# The evaluation runs on the preview miniature only (its detector's domain); its cells depend on
# the model's geometry, read from the shipped config files (no weights loaded). Without
# eval_seeds= a plain build uses the frozen full evaluation when its key matches (freeze.py),
# and otherwise computes the default count, saying why.
EVALUATE = model_ref.preview and spec.evaluation is not None
GEOMETRY = geometry.load(model.PREVIEW_DIR) if EVALUATE else None
if model_ref.preview:  # a variant's level the model lacks: one line now (other models: sampling)
    try:
        variants.check_geometry(spec.variants, GEOMETRY or geometry.load(model.PREVIEW_DIR))
    except variants.VariantError as err:
        sys.exit(f"error: {Path(SPEC).name} {err}")
FROZEN, FROZEN_WHY = None, ""
if EVALUATE and EVAL_SEEDS_ARG is None:
    FROZEN, FROZEN_WHY = freeze.load(spec, DEVICE, SPEEDUP_NAMES, model.PREVIEW_DIR, GEOMETRY)
    EVAL_SEEDS = str(FROZEN["seeds"]) if FROZEN else EVAL_SEEDS
EVAL_CELLS = spec.evaluation_cells(int(EVAL_SEEDS), GEOMETRY) if EVALUATE else {}
EVAL_GENS = sorted({g for gens in EVAL_CELLS.values() for g in gens})
EVAL_SAMPLED = [] if FROZEN else EVAL_GENS  # a frozen evaluation samples nothing
EVAL_SHEETS = sorted({gens[0].sheet_file for gens in EVAL_CELLS.values()})
EVAL_PLOTS = [p for p in specmod.EVALUATION_PLOTS  # the sweeps plot only where there are sweeps
              if p is not specmod.SWEEPS_PLOT or (spec.evaluation or {}).get("sweeps")]
BUILD.mkdir(exist_ok=True)  # doit keeps its state in build/.doit.db
remove_stale_temps(IMAGES)
remove_stale_temps(LATENTS)
remove_stale_temps(PROBES)


def call(target: str, *args):
    """Run `module:function` from pipeline/, imported only when the task runs. Bad input the
    stage names (a SpecError or ModelError) fails the task with that one line, no traceback."""
    from doit.exceptions import TaskFailed

    module, function = target.split(":")
    try:
        getattr(importlib.import_module(f"pipeline.{module}"), function)(*map(str, args))
    except (specmod.SpecError, model.ModelError, documents.DocumentError) as err:
        return TaskFailed(f"error: {err}")


def code(*modules: str) -> list[str]:
    """The modules' files; "model" brings "speedups", which model.load applies to the UNet,
    "attention" brings "topk_attention", its fused top-k kernels, and "sampling" brings the
    variants' modules, which it installs around sampling."""
    modules += ("speedups",) if "model" in modules else ()
    modules += ("topk_attention",) if "attention" in modules else ()
    if "sampling" in modules:
        modules += ("variants", "interventions", "redilation", "feature_resize",
                    "window_attention", "hires_fix")
    return [f"pipeline/{m}.py" for m in modules]


def latent(gen) -> str:
    return str(LATENTS / f"{gen.id}.safetensors")


def probe_file(gen) -> str:
    return str(PROBES / gen.probe_file)


def image(name: str) -> str:
    return str(IMAGES / name)


def task_model():
    """Check the shipped preview model (or locate the real one); record its fingerprint and geometry."""
    deps = code("model", "geometry")
    deps += [str(model.PREVIEW_DIR / model.PREVIEW_SUMS)] if model_ref.preview else []
    return {"actions": [(call, ["model:prepare", model_ref.arg, MODEL_JSON])],
            "file_dep": deps, "targets": [str(MODEL_JSON)],
            "uptodate": [config_changed(model_ref.arg), lambda: model.is_current(MODEL_JSON)],
            "clean": True}


def task_train():
    """Train the preview miniature again into models/preview/ (not in the default build)."""
    return {"actions": [(call, ["train:run_task", SPEC, model.PREVIEW_DIR, DEVICE,
                                BUILD / "train"])],
            "file_dep": code("train", "training_loop", "captions", "portraits", "preview_model"),
            "uptodate": [False], "verbosity": 2}


def stale() -> dict[Path, tuple[str, set[str]]]:
    """Per cache directory, its files' suffix and the file names the current spec still uses."""
    return {LATENTS: (".safetensors", {Path(latent(g)).name
                                       for g in spec.all_generations() + EVAL_SAMPLED}),
            PROBES: (".json", {g.probe_file for g in spec.probe_generations()})}


def remove_stale() -> None:
    for directory, (suffix, keep) in stale().items():
        for name in prune(directory, keep, suffix):
            print(f"removed {directory / name} (no generation of {SPEC} uses it)")


def task_prune():
    """Remove cached latents and probe statistics no generation of the spec uses any more."""
    return {"actions": [remove_stale], "uptodate": [False], "verbosity": 2}


def task_sample():
    """Sample every generation of one size, batched; latents are cached per generation."""
    sources = code("sampling", "schedule", "attention", "geometry", "model")
    for size, gens in spec.by_size(EVAL_SAMPLED).items():
        recipes = [spec.recipe(g) for g in gens]
        yield {"name": size,
               "actions": [(call, ["sampling:run", SPEC, MODEL_JSON, DEVICE, size, LATENTS,
                                   BATCH, EVAL_SEEDS if EVAL_SAMPLED else 0, SPEEDUPS])],
               "file_dep": [str(MODEL_JSON), *sources], "targets": [latent(g) for g in gens],
               "uptodate": [config_changed(digest([recipes, DEVICE, BATCH, SPEEDUPS]))],
               "clean": [clean_targets, remove_stale]}  # and the latents of removed seeds


def task_probe():
    """Measure self-attention statistics during sampling, up to the [probe] step."""
    sources = code("probe", "sampling", "schedule", "attention", "model")
    for size, gens in spec.probe_by_size().items():
        recipes = [spec.recipe(g) for g in gens]
        yield {"name": size,
               "actions": [(call, ["probe:run", SPEC, MODEL_JSON, DEVICE, size, PROBES, BATCH,
                                   SPEEDUPS])],
               "file_dep": [str(MODEL_JSON), *sources],
               "targets": [probe_file(g) for g in gens],
               "uptodate": [config_changed(digest([recipes, spec.probe_config(), DEVICE,
                                                   BATCH, SPEEDUPS]))], "clean": [clean_targets, remove_stale]}


def task_vae_anomaly():
    """Encode the trained-size VAE decodes again, find log-variance anomalies, perturb them."""
    if not spec.vae_anomaly:
        return
    ims = spec.vae_anomaly_images()
    return {"actions": [(call, ["vae_anomaly:run", SPEC, MODEL_JSON, DEVICE, VAE, IMAGES,
                                VAE_JSON, VAE_MAPS])],
            "file_dep": [str(MODEL_JSON), *(image(im.file) for im in ims),
                         *code("vae_anomaly", "decode", "model")],
            "targets": [str(VAE_JSON), str(VAE_MAPS)],
            "uptodate": [config_changed(digest([spec.vae_anomaly, VAE, DEVICE]))], "clean": True}


def task_plot():
    """Draw the plots (attention statistics, VAE analysis) with matplotlib, with provenance."""
    for fig in spec.plots():
        out = image(specmod.Plot(fig.id).file)
        if fig.plot in specmod.VAE_PLOTS:
            inputs = [str(VAE_JSON), str(VAE_MAPS)]
            inputs += [image(Image(spec.vae_anomaly_subject(), "vae").file)]
        else:
            inputs = [probe_file(g) for g in spec.plot_generations(fig)]
        yield {"name": fig.id,
               "actions": [(call, ["plots:run", SPEC, fig.id, PROBES, VAE_DIR, IMAGES, out])],
               "file_dep": inputs + code("plots"),
               "targets": [out],
               "uptodate": [config_changed(digest([fig.plot, fig.sizes, fig.variants]))],
               "clean": True}


def task_approx():
    """Distil the per-pixel approximate decoder from its own held-apart generations."""
    gens = spec.approx_train + spec.approx_heldout
    return {"actions": [(call, ["approx_decoder:run", SPEC, MODEL_JSON, DEVICE, LATENTS, APPROX])],
            "file_dep": [str(MODEL_JSON), *map(latent, gens), *code("approx_decoder", "decode")],
            "targets": [str(APPROX), str(APPROX_JSON)],
            "uptodate": [config_changed(digest(spec.approx_config()))], "clean": True}


def task_decode():
    """Decode each generation's latents with each decoder its figures ask for."""
    for im in spec.decodes():
        deps = [latent(im.gen), str(MODEL_JSON), *code("decode")]
        if im.decoder == "approx":
            deps.append(str(APPROX))
        yield {"name": im.name,
               "actions": [(call, ["decode:run", SPEC, MODEL_JSON, DEVICE, im.gen.id, im.decoder,
                                   LATENTS, APPROX, image(im.file)])],
               "file_dep": deps, "targets": [image(im.file)], "clean": True}


def task_overlay():
    """Draw diagram overlays (the deepest 3x3 kernel's footprint) on decoded images."""
    for im in spec.images():
        if im.overlay:
            src = image(specmod.Image(im.gen, im.decoder).file)
            yield {"name": im.name,
                   "actions": [(call, ["images:overlay", src, image(im.file), im.overlay,
                                       MODEL_JSON])],
                   "file_dep": [src, str(MODEL_JSON), *code("overlays", "images")],
                   "targets": [image(im.file)], "clean": True}


def task_thumb():
    """Make the real downscaled thumbnails the figures show."""
    for im, width in spec.thumbs():  # decodes, overlays and plots alike
        yield {"name": im.thumb_file(width),
               "actions": [(call, ["images:thumbnail", image(im.file), image(im.thumb_file(width)),
                                   width])],
               "file_dep": [image(im.file)], "targets": [image(im.thumb_file(width))],
               "clean": True}


def published_images() -> list[str]:
    """Every image file the page shows: full images and their thumbnails."""
    full = {im.file for f in spec.figures for im in f.files()}
    return sorted(map(image, full)) + [image(im.thumb_file(w)) for im, w in spec.thumbs()]


def task_measure():
    """Count characters and measure colours in every VAE decode the article shows (detector)."""
    ims = [image(im.file) for im in spec.decodes() if im.decoder == "vae"]
    return {"actions": [(call, ["measure:run", SPEC, MODEL_JSON, IMAGES, MEASURE])],
            "file_dep": [str(MODEL_JSON), *ims, *code("measure", "detector", "portraits")],
            "targets": [str(MEASURE)], "clean": True}


def task_evaluate():
    """Detect characters and measure colours in every evaluated generation, per size and variant,
    with 95% intervals and paired tests; draw a contact sheet per cell (preview miniature only).
    From the frozen records when their key matches; a full `eval_seeds=` run freezes them."""
    if not spec.evaluation:
        return
    code_deps = code("evaluate", "intervals", "detector", "measure", "portraits", "decode",
                     "freeze")
    if FROZEN:
        sheets = [str(freeze.SHEETS / name) for name in FROZEN["sheets"]]
        return {"actions": [(call, ["evaluate:run_frozen", SPEC, MODEL_JSON, freeze.FROZEN,
                                    EVAL_JSON, IMAGES, freeze.LABELS,
                                    "yes" if FROZEN["bf16_made"] else "no"])],
                "file_dep": [str(MODEL_JSON), str(freeze.FROZEN), str(freeze.LABELS), *sheets,
                             *code_deps],
                "targets": [str(EVAL_JSON), *map(image, EVAL_SHEETS)],
                "uptodate": [config_changed(digest([spec.evaluation, "frozen", FROZEN["key"],
                                                       FROZEN["bf16_made"]]))],
                "clean": True}
    return {"actions": [(call, ["evaluate:run", SPEC, MODEL_JSON, DEVICE, LATENTS,
                                EVAL_SEEDS if EVALUATE else 0, EVAL_JSON, IMAGES, freeze.LABELS,
                                SPEEDUPS, FROZEN_WHY])],
            "file_dep": [str(MODEL_JSON), str(freeze.LABELS), *map(latent, EVAL_GENS),
                         *code_deps],
            "targets": [str(EVAL_JSON), *map(image, EVAL_SHEETS)],
            "uptodate": [config_changed(digest([spec.evaluation, EVAL_SEEDS, EVALUATE, DEVICE,
                                                SPEEDUPS, FROZEN_WHY]))],
            "clean": True}


def task_eval_plot():
    """Plot the evaluation: duplication share and colour error against size, per variant; and
    the sweeps' shares per variant."""
    if not EVALUATE:
        return
    for plot in EVAL_PLOTS:
        yield {"name": plot.name,
               "actions": [(call, ["plots:run_evaluation", EVAL_JSON, image(plot.file),
                                   plot.figure])],
               "file_dep": [str(EVAL_JSON), *code("plots")], "targets": [image(plot.file)],
               "clean": True}


def eval_images() -> list[str]:
    """The evaluation's images the page shows: the plots, their thumbnails, the contact sheets."""
    if not EVALUATE:
        return []
    thumbs = [p.thumb_file(specmod.EVALUATION_PLOT_THUMB) for p in EVAL_PLOTS]
    return [*(image(p.file) for p in EVAL_PLOTS), *map(image, thumbs), *map(image, EVAL_SHEETS)]


def task_eval_thumb():
    """The evaluation plots' thumbnails."""
    if not EVALUATE:
        return
    for plot in EVAL_PLOTS:
        thumb = plot.thumb_file(specmod.EVALUATION_PLOT_THUMB)
        yield {"name": thumb,
               "actions": [(call, ["images:thumbnail", image(plot.file), image(thumb),
                                   specmod.EVALUATION_PLOT_THUMB])],
               "file_dep": [image(plot.file)], "targets": [image(thumb)], "clean": True}


def task_emit():
    """Write the figure data Hugo renders and the image manifest (provenance and sha256)."""
    files = published_images() + [probe_file(g) for g in spec.probe_generations()]
    files += [str(VAE_JSON)] if spec.vae_anomaly else []
    files += [str(EVAL_JSON), *eval_images()] if spec.evaluation else []
    return {"actions": [(call, ["emit:run", SPEC, MODEL_JSON, APPROX_JSON,
                                "pipeline/approx_decoder.py", IMAGES, DATA, MANIFEST, PROBES,
                                VAE_JSON, MEASURE, EVAL_JSON])],
            "file_dep": [SPEC, str(MODEL_JSON), str(APPROX_JSON), str(MEASURE), *files,
                         *code("emit", "approx_decoder", "geometry", "plots")],
            "targets": [str(DATA), str(MANIFEST)], "clean": True}


def task_hugo():
    """Build the static site into public/ with Hugo."""
    inputs = sorted(str(p) for d in ("content", "site") for p in Path(d).rglob("*") if p.is_file())
    return {"actions": [(call, ["hugo:build", "public"])],
            "file_dep": [*inputs, str(DATA), str(MANIFEST), *published_images(), *eval_images(),
                         *code("hugo")],
            "targets": [str(SITE_INDEX)], "uptodate": [lambda: hugo.unchanged("public")],
            "clean": ["rm -rf public build/public.partial", f"rm -f {hugo.STATE}"]}


def task_docs():
    """Render benchmarks/README.md and docs/preview-model.md from their templates under
    docs/templates/ and the committed results files (the rendered files are committed too)."""
    return {"actions": [(call, ["documents:run"])],
            "file_dep": [str(p.relative_to(documents.ROOT)) for d in (documents.TEMPLATES,
                         documents.RESULTS) for p in sorted(d.iterdir()) if p.is_file()]
                        + code("documents"),
            "targets": list(documents.DOCUMENTS)}
