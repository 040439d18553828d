"""Does a model read its prompt, and does its self-attention do anything? (prints figures)

    .venv/bin/python benchmarks/conditioning.py                       # the shipped preview model
    .venv/bin/python benchmarks/conditioning.py --model build/pilot/h4 --tag pilot-h4

Measured on the article's two prompts, on the same seeds for both (`--seeds` per prompt, the
evaluation's seeds), with the article's sampler:

- the prompt: how many tokens each prompt is (more than the text encoder's 77 are cut off), and
  how alike the two prompts' encodings are (cosine of the flattened hidden states the UNet reads);
- guidance: how much the prompt changes the UNet's noise prediction, |eps(prompt) - eps("")| over
  |eps("")|, at three noise levels, on the model's own 512² samples noised again;
- following: at 512², the share of images with exactly one character whose hair colour (and
  outfit) is the prompt's (pipeline/appearance.py), the share of all characters drawn whose hair
  is the prompt's, and how far apart the two prompts' images of
  one seed are (mean absolute difference, 0..255); at 768², the share of all characters drawn
  whose hair is the prompt's;
- attention: the first attention level's mean entropy at 512² against uniform (log of the number
  of keys), at the probe's step, and what replacing every self-attention layer by uniform
  averaging (each query gets the mean of the values) does to the 512² images: their mean absolute
  difference from the usual images and the following share under it.
"""
from __future__ import annotations

import argparse
import math
import time

from common import ROOT, write_results

NOISE_LEVELS = (999, 700, 400)


class UniformAttention:
    """A self-attention processor whose every query attends equally to every key."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, **kwargs):
        v = attn.to_v(hidden_states)
        out = v.mean(1, keepdim=True).expand_as(v)
        out = attn.to_out[1](attn.to_out[0](out))
        return out / attn.rescale_output_factor


def main() -> None:
    import numpy as np
    import torch

    from pipeline import (appearance, attention, decode, detector, model, portraits, probe,
                          sampling, schedule, spec as specmod)
    from pipeline.spec import Generation

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="preview")
    ap.add_argument("--tag", default="")
    ap.add_argument("--seeds", type=int, default=32, help="seeds per prompt")
    ap.add_argument("--large", type=int, default=768)
    ap.add_argument("--skip", default="", help="parts left out: uniform, large (comma-separated)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    skip = {p for p in args.skip.split(",") if p}
    if skip - {"uniform", "large"}:
        ap.error(f"--skip: unknown part(s) {sorted(skip - {'uniform', 'large'})}; "
                 "the parts that can be left out are uniform and large")
    started = time.perf_counter()
    spec = specmod.load(ROOT / "figures.toml")
    json_path = ROOT / "build" / "conditioning-model.json"
    model.prepare(args.model, json_path)
    comps = model.load(str(json_path), "cpu")
    geometry = comps.info["geometry"]
    size = geometry["train_size"]
    keys = list(spec.evaluation["prompts"])
    seeds = [spec.evaluation["seed_start"] + i for i in range(args.seeds)]
    attrs = {k: portraits.attributes(spec.prompts[k]) for k in keys}
    rows = []

    def row(measure: str, value, prompt: str = "", note: str = ""):
        rows.append({"measure": measure, "prompt": prompt,
                     "value": round(value, 4) if isinstance(value, float) else value,
                     "note": note})
        print(f"{measure:<34} {prompt:<7} {value if not isinstance(value, float) else round(value, 4)}"
              f"  {note}")

    # --- the prompt ---------------------------------------------------------------------------
    tok = comps.tokenizer
    limit = tok.model_max_length
    for k in keys:
        n = len(tok(spec.prompts[k]).input_ids)
        row("prompt tokens", n, k, f"the text encoder reads {limit}; cut" if n > limit else "")
    with torch.no_grad():
        enc = sampling.encode_prompts(comps, [spec.prompts[k] for k in keys] + [""]).float()
    flat = enc.flatten(1)
    cos = torch.nn.functional.cosine_similarity(flat[0], flat[1], dim=0).item()
    row("prompt encodings cosine", cos, "both", "1 = the UNet sees the same prompt")

    # --- sampling and reading -----------------------------------------------------------------
    def run(gens: list, uniform: bool = False) -> dict:
        latents = {}

        def done(chunk, z):
            latents.update({g.id: z[i] for i, g in enumerate(chunk)})

        if uniform:  # installed after the variant (usual) by wrapping prepare; sampling.sample
            original = sampling.prepare  # gives each UNet its own processors back afterwards

            def prepare(c, s, chunk, probe=None):
                out = original(c, s, chunk, probe)
                attention.set_self_attention(c.unet, lambda name, level, own: UniformAttention())
                return out

            sampling.prepare = prepare
        try:
            sampling.sample_generations(comps, spec, gens, "auto", done)
        finally:
            if uniform:
                sampling.prepare = original
        out = {}
        for g in gens:
            img = np.asarray(decode.to_pil(decode.vae(latents[g.id][None], comps.vae)[0]))
            out[g.id] = {"img": img, "z": latents[g.id], "chars": appearance.characters(img)}
        return out

    def follow_share(images: dict, gens: list, key: str, outfit: bool) -> float:
        want = attrs[key] if outfit else {"hair": attrs[key]["hair"]}
        ok = [len(c := images[g.id]["chars"]) == 1 and appearance.follows(c, want) == [True]
              for g in gens if g.prompt == key]
        return sum(ok) / len(ok)

    def hair_share(chars: list, key: str) -> float:
        hits = appearance.follows(chars, {"hair": attrs[key]["hair"]})
        return sum(hits) / len(hits) if hits else 0.0

    usual = [Generation(k, s, size, size) for s in seeds for k in keys]
    t = time.perf_counter()
    base = run(usual)
    sample_s = time.perf_counter() - t
    for k in keys:
        one = [len(base[g.id]["chars"]) == 1 for g in usual if g.prompt == k]
        row(f"exactly one character {size}", sum(one) / len(one), k)
        row(f"one, prompt's hair {size}", follow_share(base, usual, k, False), k)
        row(f"one, prompt's hair and outfit {size}", follow_share(base, usual, k, True), k)
        chars = [c for g in usual if g.prompt == k for c in base[g.id]["chars"]]
        row(f"characters with prompt's hair {size}", hair_share(chars, k), k,
            f"{len(chars)} characters")
    pairs = [np.abs(base[f"{keys[0]}-{s}-{size}x{size}-usual"]["img"].astype(float)
                    - base[f"{keys[1]}-{s}-{size}x{size}-usual"]["img"]).mean() for s in seeds]
    row("same seed, other prompt: |diff|", float(np.mean(pairs)), "both",
        f"min {min(pairs):.1f}, max {max(pairs):.1f} (0..255)")

    # --- guidance: the prompt's effect on the noise prediction ---------------------------------
    alphas = schedule.training_alphas_cumprod(comps.scheduler_config)
    z0 = torch.stack([base[g.id]["z"] for g in usual[:8]])
    ctx = torch.stack([enc[keys.index(g.prompt)] for g in usual[:8]])
    empty = enc[-1:].expand_as(ctx)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(z0.shape, generator=g)
    for t_ in NOISE_LEVELS:
        a = alphas[t_]
        x = a.sqrt() * z0 + (1 - a).sqrt() * noise
        with torch.no_grad():
            e_c = comps.unet(x, t_, encoder_hidden_states=ctx).sample.float()
            e_u = comps.unet(x, t_, encoder_hidden_states=empty).sample.float()
        row(f"|eps(prompt) - eps('')| / |eps('')| t={t_}",
            ((e_c - e_u).norm() / e_u.norm()).item(), "both")

    # --- attention ----------------------------------------------------------------------------
    stats = probe.measure(comps, spec, [Generation(k, seeds[0], size, size) for k in keys])
    levels = sorted({layer["level"] for layer in stats[0]["layers"]})
    for level in levels:
        layers = [layer for st in stats for layer in st["layers"] if layer["level"] == level]
        h = float(np.mean([layer["entropy"] for layer in layers]))
        uniform = math.log(layers[0]["n"])
        row(f"attention entropy level {level} ({size})", h, "both",
            f"uniform {uniform:.3f}: {uniform - h:.3f} nats below; {len(layers) // len(stats)} "
            f"layers, probe step {spec.probe['step']}")
    if "uniform" not in skip:
        flat_attn = run(usual, uniform=True)
        diff = [np.abs(base[g.id]["img"].astype(float) - flat_attn[g.id]["img"]).mean()
                for g in usual]
        row(f"uniform attention: |diff| {size}", float(np.mean(diff)), "both",
            f"min {min(diff):.1f}, max {max(diff):.1f} (0..255)")
        for k in keys:
            row(f"uniform attention: prompt's hair {size}",
                follow_share(flat_attn, usual, k, False), k)
            one = [len(flat_attn[g.id]["chars"]) == 1 for g in usual if g.prompt == k]
            row(f"uniform attention: exactly one {size}", sum(one) / len(one), k)

    # --- the large size ---------------------------------------------------------------------
    large = [Generation(k, s, args.large, args.large) for s in seeds for k in keys]
    big = run(large) if "large" not in skip else {}
    for k in keys if big else ():
        chars = [c for gg in large if gg.prompt == k for c in big[gg.id]["chars"]]
        counts = [len(big[gg.id]["chars"]) for gg in large if gg.prompt == k]
        row(f"characters with prompt's hair {args.large}", hair_share(chars, k), k,
            f"{len(chars)} characters; two or more in {sum(n >= 2 for n in counts)} of "
            f"{len(counts)}")
    row("seconds", round(time.perf_counter() - started, 1), "",
        f"{size}² sampling of {len(usual)}: {sample_s:.0f} s")
    meta = {"model": comps.info.get("kind"), "model_dir": comps.info.get("dir"),
            "seeds_per_prompt": args.seeds, "first_seed": seeds[0], "size": size,
            "large": args.large, "skipped": sorted(skip), "detector": detector.VERSION,
            "appearance": "pipeline/appearance.py"}
    write_results(args.out, "conditioning-cpu", meta, rows, args.tag)


if __name__ == "__main__":
    main()
