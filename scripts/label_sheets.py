"""Make numbered sheets of evaluated generations for labelling the detector's classes by eye.

    python scripts/label_sheets.py OUT_DIR        # after `doit eval_seeds=32` (latents cached)
    python scripts/label_sheets.py OUT_DIR --after N   # the N seeds past PLAN's, per cell
    python scripts/label_sheets.py OUT_DIR --after N --skip M  # ... past the M held out before
    python scripts/label_sheets.py OUT_DIR --side 400  # each decode at 400 px, not 256
    python scripts/label_sheets.py OUT_DIR --resample  # sample them again, on any CPU
    python scripts/label_sheets.py OUT_DIR --shuffle   # sheets in a fixed shuffled order
    python scripts/label_sheets.py OUT_DIR --labelled --resample  # every labelled one, for
                                                    # detector work on any CPU kind

Picks a fixed, stratified set of the evaluation's generations (PLAN: per size and variant, the
first n seeds), VAE-decodes each from build/latents/, and writes OUT_DIR/sheet-NN.png (each
image numbered, 12 a sheet at the default 256 px), OUT_DIR/index.json (number -> generation id)
and each decode at full size as OUT_DIR/images/<generation id>.png (for looking closer, and for
trying a detector change against the labels without decoding again). `--after N` picks, for each
of PLAN's cells, the N generations that follow the ones PLAN names: a held-out set for checking
a detector change that was tried against the labels already given; `--skip M` passes over the M
per cell that an earlier held-out batch took. The labels a person gives them live in
frozen/detector_labels.json, which tests/test_detector_labels.py compares with the frozen
evaluation's classes.

The labels belong to the frozen evaluation's images, which were sampled under its own speed-ups
(the frozen file's key_inputs). A CPU whose default path differs (no bf16 instructions: fp32)
caches other latents for the same seeds, and other images. `--resample` instead samples the
chosen generations again under the frozen speed-ups (on such a CPU oneDNN emulates bf16: slow,
over a minute per 768 px generation a core, but the same images up to bf16 rounding, as on
another bf16 kind) and keeps their latents in OUT_DIR/latents/; it goes on where an interrupted
run stopped. `--shuffle` orders the sheets by a fixed shuffle rather than by cell, so the label
a person gives is not led by knowing the variant; index.json maps the numbers back either way.
`--labelled` takes every generation frozen/detector_labels.json labels (all batches), the hard
ones first (where the frozen evaluation's class is not the label, or a face has four eyes or
more, at 640 px and over; then the small sizes; then the rest, largest first), and with
`--resample` decodes after each CHUNK sampled, so that a run cut off after hours keeps what it
made; scripts/detector_agreement.py OUT_DIR then measures a detector change against all labels.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLAN = {  # (size, variant): generations, the first seeds of the evaluation's range
    (768, "usual"): 16, (768, "redilate"): 12, (768, "deep-shrink"): 12, (768, "window"): 8,
    (768, "hires-fix"): 12, (768, "redilate-l0123"): 8, (768, "topk-denominator"): 8,
    (768, "redilate-t20"): 8, (640, "usual"): 12, (640, "redilate"): 8, (640, "deep-shrink"): 8,
    (640, "hires-fix"): 8, (512, "usual"): 24, (384, "usual"): 16, (384, "logit-scale"): 4,
    (256, "usual"): 12, (256, "deep-enlarge"): 8, (256, "hires-fix"): 8, (200, "usual"): 12,
    (200, "deep-enlarge"): 8, (200, "hires-fix"): 8,
}
SIDE, WIDTH, ROWS = 256, 1240, 3  # each decode at SIDE px, as many columns as fit WIDTH
SHUFFLE_SEED = 2026
CHUNK = 8  # with --labelled --resample: generations sampled between decodes


def chosen(spec, geometry, after: int = 0, skip: int = 0) -> list:
    """PLAN's generations, or with `after` the `after` generations past them in each cell (past
    `skip` more)."""
    cells = spec.evaluation_cells(spec.evaluation["seeds"], geometry)
    out = []
    for (size, variant), n in PLAN.items():
        cell = cells[((size, size), variant)]
        out += cell[n + skip:n + skip + after] if after else cell[:n]
    return list(dict.fromkeys(out))


def labelled(spec, geometry, labels: dict, frozen: dict) -> list:
    """Every generation the labels file labels, hardest first: at 640 px and over, those whose
    frozen class is not the label or that hold a face of four eyes or more; then those of 512 px
    and under; then the rest, largest first (ties by id)."""
    cells = spec.evaluation_cells(spec.evaluation["seeds"], geometry)
    by_id = {g.id: g for gens in cells.values() for g in gens}
    unknown = sorted(set(labels["labels"]) - set(by_id))
    if unknown:
        raise SystemExit(f"labelled generations the evaluation does not hold: {unknown[:3]}; "
                         f"frozen/detector_labels.json belongs to another [evaluation] table")

    def order(g):
        r = frozen["records"][g.id]
        hard = r["class"] != labels["labels"][g.id] or max(r["eyes"], default=0) >= 4
        return (0 if hard and g.width >= 640 else 1 if g.width <= 512 else 2,
                -g.width * g.height, g.id)

    return sorted((by_id[k] for k in labels["labels"]), key=order)


def main() -> None:
    import torch

    from pipeline import decode, freeze, model, sampling, spec as specmod, speedups as speedmod
    from pipeline.files import safetensors_metadata, write_png
    from pipeline.sampling import load_latents

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--after", type=int, default=0,
                        help="per cell, the N generations past PLAN's (a held-out set)")
    parser.add_argument("--side", type=int, default=SIDE,
                        help="px each decode is shown at (400: the 640 and 768 px decodes at over "
                             "half their size, where faint eyes and ghosts stay visible)")
    parser.add_argument("--skip", type=int, default=0,
                        help="with --after: pass over M more per cell (earlier held-out batches)")
    parser.add_argument("--resample", action="store_true",
                        help="sample them again under the frozen evaluation's speed-ups instead "
                             "of decoding build/latents/ (latents kept in OUT_DIR/latents/)")
    parser.add_argument("--shuffle", action="store_true",
                        help="the sheets in a fixed shuffled order, not grouped by cell")
    parser.add_argument("--labelled", action="store_true",
                        help="every labelled generation, hardest first (with --resample: "
                             "decoded after each chunk sampled)")
    args = parser.parse_args()
    out = args.out
    (out / "images").mkdir(parents=True, exist_ok=True)
    spec = specmod.load(ROOT / "figures.toml")
    frozen = json.loads((ROOT / freeze.FROZEN).read_text())
    speedups = speedmod.arg(frozen["key_inputs"]["speedups"]) if args.resample else speedmod.NONE
    comps = model.load(str(ROOT / "build/model.json"), "cpu", speedups)
    if args.labelled:
        labels = json.loads((ROOT / freeze.LABELS).read_text())
        gens = labelled(spec, comps.info["geometry"], labels, frozen)
    else:
        gens = chosen(spec, comps.info["geometry"], args.after, args.skip)

    if args.resample:
        key = {g: sampling.cache_key(sampling.provenance(spec, g, comps)) for g in gens}
    else:
        source = {g: ROOT / "build/latents" / f"{g.id}.safetensors" for g in gens}
        key = {g: safetensors_metadata(source[g]).get("key", "") for g in gens}

    def save(g, z):  # each decode names the latents it was decoded from
        with torch.no_grad():
            full = decode.to_pil(decode.vae(z[None], comps.vae)[0])
        write_png(out / "images" / f"{g.id}.png", full, {"latents": key[g]})

    todo = [g for g in gens if decoded_from(out / "images" / f"{g.id}.png") != key[g]]
    if args.resample:
        step = CHUNK if args.labelled else max(len(todo), 1)
        for k in range(0, len(todo), step):  # decoded per chunk: a long run keeps what it made
            resample(comps, spec, todo[k:k + step], out / "latents", save)
    else:
        for g in todo:
            save(g, load_latents(source[g])[0])
    if args.shuffle:
        random.Random(SHUFFLE_SEED).shuffle(gens)
    sheets = write_sheets(out, [out / "images" / f"{g.id}.png" for g in gens], args.side)
    (out / "index.json").write_text(json.dumps(dict(enumerate(g.id for g in gens)), indent=1))
    print(f"{len(gens)} generations on {sheets} sheets in {out}")


def resample(comps, spec, gens: list, latents_dir: Path, done) -> None:
    """Sample `gens` with `comps` (loaded under the frozen speed-ups), keeping each one's latents
    in `latents_dir` as the sample task keeps them (provenance and cache key), then call
    `done(gen, latents)` for each, in order, on the calling thread's own thread count (as the
    evaluation decodes: a decode's last bits depend on it). Latents already there under the same
    key are used, not sampled again: an interrupted run goes on where it stopped."""
    from pipeline import sampling
    from pipeline.files import atomic_write, safetensors_bytes, safetensors_metadata

    latents_dir.mkdir(parents=True, exist_ok=True)
    path = {g: latents_dir / f"{g.id}.safetensors" for g in gens}
    prov = {g: sampling.provenance(spec, g, comps) for g in gens}
    key = {g: sampling.cache_key(prov[g]) for g in gens}
    todo = [g for g in gens
            if not (path[g].is_file() and safetensors_metadata(path[g]).get("key") == key[g])]

    def made(chunk, zs):  # as sampling.run writes them (pipeline/sampling.py is keyed: not shared)
        for g, z in zip(chunk, zs):
            meta = {"key": key[g], "provenance": json.dumps(prov[g], sort_keys=True)}
            atomic_write(path[g], safetensors_bytes({"latents": z}, meta))
            print(f"sampled {g.id}", flush=True)

    sampling.sample_generations(comps, spec, sorted(todo, key=lambda g: -g.width * g.height),
                                "auto", made)
    for g in gens:
        done(g, sampling.load_latents(path[g])[0])


def decoded_from(path: Path) -> str | None:
    """The cache key of the latents a saved decode was made from (its PNG text), or None."""
    from PIL import Image

    if not path.is_file():
        return None
    with Image.open(path) as img:
        return img.text.get("latents")


def write_sheets(out: Path, paths: list[Path], side: int) -> int:
    """OUT/sheet-NN.png: the images at `paths` at `side` px, numbered in order (and nothing
    else on them), as many columns as fit WIDTH and ROWS rows a sheet. Returns how many sheets."""
    from PIL import Image, ImageDraw

    columns = max(1, WIDTH // (side + 4))
    per_sheet = columns * ROWS
    for start in range(0, len(paths), per_sheet):
        sheet = Image.new("RGB", (columns * (side + 4), ROWS * (side + 4)), "white")
        draw = ImageDraw.Draw(sheet)
        for k, path in enumerate(paths[start:start + per_sheet]):
            x, y = (k % columns) * (side + 4), (k // columns) * (side + 4)
            with Image.open(path) as img:
                sheet.paste(img.convert("RGB").resize((side, side), Image.LANCZOS), (x, y))
            draw.rectangle((x, y, x + 30, y + 14), fill="black")
            draw.text((x + 3, y + 2), str(start + k), fill="yellow")
        sheet.save(out / f"sheet-{start // per_sheet:02d}.png")
    return -(-len(paths) // per_sheet)


def decode_path(gen: str, dirs: list[Path]) -> Path | None:
    """The saved decode of generation `gen` in the first of `dirs` (OUT_DIR/images folders)
    that has it, or None."""
    return next((d / f"{gen}.png" for d in dirs if (d / f"{gen}.png").is_file()), None)


def labelled_closer(labels: dict) -> set[str]:
    """The generations of the labels file's held-out batches labelled on sheets larger than
    SIDE px in the first place (their `side`), which a second look does not take again."""
    return {g for batch in labels.get("held_out", []) if batch.get("side", SIDE) > SIDE
            for g in batch["generations"]}


if __name__ == "__main__":
    main()
