"""Plots drawn by the pipeline: the attention statistics the probe stage measured (section 6)
and the VAE log-variance analysis (section 3).

Each plot shares the signature `plot(fig, data) -> matplotlib Figure`, where `fig` is the spec's
Figure and `data` is what its stage produced: for the probe plots a map from (size, variant) to
the probe results for that cell, one per seed; for the VAE plots the analysis' JSON, its maps
and the image it examined. Rendering is Agg with matplotlib's bundled font and no
timestamps, so the same statistics give the same PNG bytes.
"""
from __future__ import annotations

import math
from pathlib import Path

STYLE = {  # colour, marker, line style: lines that coincide (top-k at n <= n_train) stay visible
    "usual": ("#222222", "o", "-"),
    "logit-scale": ("#d62728", "s", "-"),
    "topk-denominator": ("#1f77b4", "^", "--"),
    "topk-mask": ("#2ca02c", "v", ":"),
}
SIZE_COLOURS = ["#9467bd", "#1f77b4", "#222222", "#ff7f0e", "#d62728", "#8c564b"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "legend.fontsize": 8,
                         "svg.hashsalt": "article", "figure.dpi": 100})
    return plt


DPI = 200          # the saved PNG's resolution
MIN_TEXT_PX = 11   # the smallest text the page shows, at the width it shows the plot


def legible(figure, shown_px: int) -> None:
    """Enlarge every text of `figure` (titles, labels, ticks, legends) so that, saved at DPI and
    shown `shown_px` wide, none is smaller than MIN_TEXT_PX pixels; then lay it out again."""
    from matplotlib.text import Text

    least = MIN_TEXT_PX * figure.get_figwidth() * DPI / shown_px * 72 / DPI  # in points
    for ax in figure.axes:  # tick labels are made as the axes are drawn: set their size
        for axis in (ax.xaxis, ax.yaxis):
            if min((t.label1.get_fontsize() for t in axis.get_major_ticks()), default=least) < least:
                ax.tick_params(axis="x" if axis is ax.xaxis else "y", which="both",
                               labelsize=least)
    figure.canvas.draw()
    for text in figure.findobj(Text):
        if text.get_text() and text.get_fontsize() < least:
            text.set_fontsize(least)
    figure.tight_layout()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def level_means(results: list[dict], key: str) -> dict[int, float]:
    """Mean of `key` over the layers at each level, then over seeds."""
    per_level: dict[int, list[float]] = {}
    for r in results:
        by_level: dict[int, list[float]] = {}
        for layer in r["layers"]:
            by_level.setdefault(layer["level"], []).append(layer[key])
        for level, vals in by_level.items():
            per_level.setdefault(level, []).append(_mean(vals))
    return {level: _mean(v) for level, v in per_level.items()}


def entropy(fig, stats: dict):
    """Mean self-attention entropy (top row) and mean total attention weight (bottom row) per
    UNet level against image size, one line per variant."""
    plt = _pyplot()
    first = next(iter(stats.values()))[0]
    levels = sorted({layer["level"] for layer in first["layers"]})
    n_train = {layer["level"]: layer["n_train"] for layer in first["layers"]}
    out, axes = plt.subplots(2, len(levels), figsize=(3.1 * len(levels), 5.4), squeeze=False,
                             sharex=True)
    xs = [w for w, _ in fig.sizes]
    for col, level in enumerate(levels):
        for variant in fig.variants:
            colour, marker, style = STYLE[variant]
            for row, key in enumerate(("entropy", "mass")):
                ys = [level_means(stats[(size, variant)], key)[level] for size in fig.sizes]
                axes[row][col].plot(xs, ys, color=colour, marker=marker, linestyle=style,
                                    label=variant, markersize=4, linewidth=1.4)
        top = axes[0][col]
        top.set_title(f"UNet level {level}\n({n_train[level]} keys at the trained size)")
        axes[0][col].set_ylabel("mean entropy (nats)" if col == 0 else "")
        axes[1][col].set_ylabel("mean total weight" if col == 0 else "")
        axes[1][col].set_xlabel("image side (px)")
        axes[1][col].set_xticks(xs)
        for row in (0, 1):
            axes[row][col].grid(True, alpha=0.3)
            axes[row][col].axvline(first["train_size"], color="#999999", linewidth=0.8,
                                   linestyle="--")
    axes[0][0].legend(title="attention", loc="best")
    step, sigma = first["step"], first["sigma"]
    seeds = len(next(iter(stats.values())))
    out.suptitle(f"Self-attention at sampling step {step + 1} of {first['provenance']['steps']} "
                 f"(σ = {sigma:.2f}), mean over layers and {seeds} seed(s)\ndashed: trained size")
    out.tight_layout()
    return out


def logprob(fig, stats: dict):
    """Histogram of log attention probabilities in one early self-attention layer, one panel
    per variant, one line per size; the dotted verticals mark uniform attention, log(1/n)."""
    plt = _pyplot()
    first = next(iter(stats.values()))[0]
    hist = first["histogram"]
    out, axes = plt.subplots(1, len(fig.variants), figsize=(4.2 * len(fig.variants), 3.6),
                             squeeze=False, sharey=True)
    width = -hist["log_min"] / hist["bins"]
    centres = [hist["log_min"] + (i + 0.5) * width for i in range(hist["bins"])]
    for col, variant in enumerate(fig.variants):
        ax = axes[0][col]
        for i, size in enumerate(fig.sizes):
            results = stats[(size, variant)]
            density = [_mean([r["histogram"]["density"][b] for r in results])
                       for b in range(hist["bins"])]
            colour = SIZE_COLOURS[i % len(SIZE_COLOURS)]
            ax.step(centres, density, where="mid", color=colour, linewidth=1.3,
                    label=f"{size[0]}×{size[1]}")
            layer = next(x for x in results[0]["layers"] if x["name"] == hist["layer"])
            ax.axvline(-math.log(layer["n"]), color=colour, linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_title(f"attention: {variant}")
        ax.set_xlabel("log attention probability (natural log)")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("fraction of weights")
    axes[0][0].legend(title="image size", loc="upper left")
    out.suptitle(f"Layer {hist['layer']} at sampling step {first['step'] + 1} "
                 f"(σ = {first['sigma']:.2f})", fontsize=8)
    out.tight_layout()
    return out


def _mark_patch(ax, y: int, x: int, colour: str, shape: str) -> None:
    from matplotlib.patches import Circle, Rectangle

    if shape == "circle":
        ax.add_patch(Circle((x, y), 1.6, fill=False, edgecolor=colour, linewidth=1.5))
    else:
        ax.add_patch(Rectangle((x - 1.5, y - 1.5), 3, 3, fill=False, edgecolor=colour,
                               linewidth=1.5))


def logvar(fig, data: dict):
    """The subject image beside its log-variance map, flagged positions circled."""
    plt = _pyplot()
    result, maps = data["result"], data["maps"]
    subject = next(i for i in result["images"] if i["image"] == result["subject"])
    lv = maps[f"{subject['generation']}.logvar"].numpy()
    out, (left, right) = plt.subplots(1, 2, figsize=(9.2, 4.2),
                                      gridspec_kw={"width_ratios": [1, 1.22]})
    left.imshow(data["image"])
    left.set_title(result["subject"].removesuffix(".png"), fontsize=7)
    left.axis("off")
    shown = right.imshow(lv, cmap="magma", interpolation="nearest")
    out.colorbar(shown, ax=right, label="log-variance (min over channels)")
    for a in subject["anomalies"]:
        _mark_patch(right, a["y"], a["x"], "#00e5ff", "circle")
    ordinary = result["experiment"]["ordinary"]
    _mark_patch(right, ordinary["y"], ordinary["x"], "white", "square")
    n = len(subject["anomalies"])
    right.set_title(f"{n} position{'s' * (n != 1)} flagged (floor {result['floor']:g}, "
                    f"median {subject['logvar_median']:.2f}, min {subject['logvar_min']:.2f})")
    right.set_xlabel("latent x")
    right.set_ylabel("latent y")
    out.tight_layout()
    return out


def perturbation(fig, data: dict):
    """The two change maps (anomalous vs ordinary position), on one colour scale."""
    plt = _pyplot()
    result, maps = data["result"], data["maps"]
    changes = [maps["change.anomalous"].numpy(), maps["change.ordinary"].numpy()]
    vmax = max(float(c.max()) for c in changes) or 1.0
    out, axes = plt.subplots(1, 2, figsize=(9.6, 4.2))
    f = result["factor"]
    for ax, name, change in zip(axes, ("anomalous", "ordinary"), changes):
        e = result["experiment"][name]
        shown = ax.imshow(change, cmap="inferno", vmin=0, vmax=vmax, interpolation="nearest")
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((e["x"] * f - 0.5, e["y"] * f - 0.5), f, f, fill=False,
                               edgecolor="#00e5ff", linewidth=1.2))
        label = name if name == "ordinary" or result["subject_flagged"] else "lowest (unflagged)"
        ax.set_title(f"{label} position ({e['y']}, {e['x']})\nlog-variance {e['logvar']:.1f}; "
                     f"{e['changed_outside']:.1%} of pixels\noutside the patch changed "
                     f"> {e['threshold']:g}")
        ax.axis("off")
    out.colorbar(shown, ax=list(axes), label="absolute change (0..1, mean over RGB)")
    return out


PLOTS = {"entropy": entropy, "logprob": logprob, "logvar": logvar, "perturbation": perturbation}


def evaluation(fig, data: dict):
    """The evaluation (section 6): share of images with two or more characters (left) and mean
    colour error against the training renders (right) against image size, one line per variant,
    95% intervals as bands. `fig` is unused (the evaluation is not a [[figure]])."""
    plt = _pyplot()
    out, (dup, col) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    variants = data["variants"]  # [evaluation] variants: measured at every size
    for v in variants:
        cells = sorted((c for c in data["cells"] if c["variant"] == v), key=lambda c: c["width"])
        xs = [c["width"] for c in cells]
        colour, marker, line = STYLE[v]
        for ax, key in ((dup, "two_plus"), (col, "colour_error")):
            ax.plot(xs, [c[key] for c in cells], color=colour, marker=marker, linestyle=line,
                    label=v, markersize=4)
            ax.fill_between(xs, [c[f"{key}_ci"][0] for c in cells],
                            [c[f"{key}_ci"][1] for c in cells], color=colour, alpha=0.12,
                            linewidth=0)
    for ax in (dup, col):
        ax.axvline(data["train_size"], color="#999999", linewidth=0.8, linestyle="--")
        ax.set_xlabel("image size (px on a side)")
        ax.set_xticks(sorted({c["width"] for c in data["cells"]}))
    dup.set_ylabel("share with two or more characters")
    dup.set_ylim(-0.02, 1.02)
    col.set_ylabel("colour error (RMS z vs training renders)")
    dup.legend(loc="upper left", frameon=False)
    out.suptitle(f"generations per cell: {data['seeds']}; bands: {100 * data['level']:.0f}% intervals "
                 f"(Wilson for shares, bootstrap for means)", fontsize=8)
    out.tight_layout()
    return out


def sweeps(fig, data: dict):
    """The evaluation's sweeps (figures.toml [evaluation] sweeps): per sweep, the share with two
    or more characters and the share with exactly one for each variant in order, with their 95%
    intervals as error bars."""
    plt = _pyplot()
    out, axes = plt.subplots(1, len(data["sweeps"]), figsize=(4.6 * len(data["sweeps"]), 3.6),
                             squeeze=False)
    for ax, sweep in zip(axes[0], data["sweeps"]):
        cells = {c["variant"]: c for c in data["cells"] if c["width"] == sweep["size"]}
        xs = range(len(sweep["variants"]))
        for key, name, colour, marker in (("two_plus", "two or more", "#c0392b", "o"),
                                          ("exactly_one", "exactly one", "#1f6fb2", "s")):
            ys = [cells[v][key] for v in sweep["variants"]]
            lo = [y - cells[v][f"{key}_ci"][0] for v, y in zip(sweep["variants"], ys)]
            hi = [cells[v][f"{key}_ci"][1] - y for v, y in zip(sweep["variants"], ys)]
            ax.errorbar(xs, ys, yerr=[lo, hi], color=colour, marker=marker, capsize=3,
                        label=name, markersize=5)
        ax.set_xticks(list(xs), ["usual" if v == "usual" else data["labels"][v]
                                 for v in sweep["variants"]], rotation=20, fontsize=11)
        ax.set_title(f"{sweep['title']}\n({sweep['size']}×{sweep['size']})", fontsize=12)
        ax.set_xlabel(sweep["axis"], fontsize=11)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("share of images", fontsize=11)
        ax.tick_params(labelsize=11)
    axes[0][0].legend(loc="best", frameon=False, fontsize=11)
    out.suptitle(f"generations per cell: {data['seeds']}; bars: {100 * data['level']:.0f}% "
                 f"Wilson intervals", fontsize=11)
    out.tight_layout()
    return out


EVALUATION_PLOTS = {"evaluation": evaluation, "evaluation-sweeps": sweeps}


def run_evaluation(eval_json: str, out: str, which: str = "evaluation") -> None:
    """The `eval_plot` task: draw one of the evaluation's plots, with its provenance."""
    import io
    import json

    from PIL import Image

    from .files import read_json, write_png

    data = read_json(eval_json)
    figure = EVALUATION_PLOTS[which](None, data)
    from .spec import EVALUATION_PLOT_THUMB

    legible(figure, EVALUATION_PLOT_THUMB)
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    _pyplot().close(figure)
    prov = {"plot": which, "model": data["model"], "detector": data["detector"],
            "seeds": data["seeds"], "seed_range": data["seed_range"],
            "inputs": sorted(data["generations"])}
    with Image.open(buf) as img:
        img.load()
        write_png(out, img.convert("RGB"), {"provenance": json.dumps(prov, sort_keys=True)})


def vae_data(vae_dir, images_dir) -> dict:
    """What the VAE plots draw from: the analysis JSON, its maps and the subject image."""
    import json
    from pathlib import Path

    from PIL import Image
    from safetensors.torch import load_file

    result = json.loads((Path(vae_dir) / "anomaly.json").read_text())
    with Image.open(Path(images_dir) / result["subject"]) as im:
        image = im.convert("RGB")
        provenance = json.loads(im.info.get("provenance", "{}"))
    return {"result": result, "maps": load_file(str(Path(vae_dir) / "maps.safetensors")),
            "image": image, "provenance": provenance}


def probe_data(spec, fig, probe_dir) -> dict:
    from .files import read_json

    stats: dict[tuple, list] = {(size, v): [] for size in fig.sizes for v in fig.variants}
    for g in spec.plot_generations(fig):
        stats[((g.width, g.height), g.variant)].append(read_json(Path(probe_dir) / g.probe_file))
    return stats


# --- the `plot:<figure>` task ------------------------------------------------------------------

def run(spec_path: str, figure_id: str, probe_dir: str, vae_dir: str, images_dir: str,
        out: str) -> None:
    import io
    import json

    from PIL import Image

    from . import spec as specmod
    from .files import write_png

    spec = specmod.load(spec_path)
    fig = spec.figure(figure_id)
    if fig.plot in specmod.PROBE_PLOTS:
        data = probe_data(spec, fig, probe_dir)
        results = [r for rs in data.values() for r in rs]
        first = results[0]["provenance"]
        made = {"probe": spec.probe_config(),
                "inputs": sorted(r["provenance"]["generation"] for r in results),
                **{k: first[k] for k in ("prompt_key", "prompt", "steps", "sampler", "schedule",
                                         "guidance", "model", "model_preview", "device",
                                         "dtype", "torch", "diffusers")}}
    else:
        data = vae_data(vae_dir, images_dir)
        result, subject = data["result"], data["provenance"]
        made = {"vae": result["vae"], "vae_anomaly": result["config"],
                "inputs": [i["image"] for i in result["images"]], "subject": result["subject"],
                **{k: subject[k] for k in ("prompt_key", "prompt", "seed", "width", "height",
                                           "steps", "sampler", "schedule", "guidance",
                                           "variant", "model", "model_preview", "device",
                                           "dtype", "torch", "diffusers")}}
    figure = PLOTS[fig.plot](fig, data)
    legible(figure, fig.thumb)
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    _pyplot().close(figure)
    prov = {"plot": fig.plot, "figure": fig.id, **made}
    with Image.open(buf) as img:
        img.load()
        write_png(out, img.convert("RGB"), {"provenance": json.dumps(prov, sort_keys=True)})
