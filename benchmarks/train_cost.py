"""What `doit train` costs on this machine, projected from timed steps (not a test; prints figures).

    .venv/bin/python benchmarks/train_cost.py                  # CPU, the shipped model's settings

Times a few VAE and UNet training steps (pipeline/train.py, each stage after one untimed
warm-up step) at the settings recorded beside the shipped weights (models/preview/training.json),
on freshly initialised modules, and projects the whole run: VAE steps x its step time + UNet
steps x its step time. Rendering and encoding the portraits are left out (the shipped weights'
training.json records what they took, `render_and_encode_seconds`). The VAE trains on rendered
portraits, the UNet on random latents of their shape: the cost of a step does not depend on what
the data show.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from common import ROOT, write_results


def main() -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from pipeline import portraits, preview_model, spec as specmod, train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per stage")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    recorded = json.loads((ROOT / "models/preview/training.json").read_text())["settings"]
    s = train.Settings(**recorded)
    spec = specmod.load(ROOT / "figures.toml")
    src, vocab = train.source(s, spec.prompts), train.words(s, spec.prompts)
    caps, images = train.render_images(src, 0, max(s.vae_batch, 8), s.seed, size=s.size)
    captions = list(dict.fromkeys(caps))
    config = preview_model.MINI
    torch.manual_seed(0)
    vae = AutoencoderKL(**config["vae"]).to(args.device)
    unet = UNet2DConditionModel(**train.unet_config(s)).to(args.device)
    text = CLIPTextModel(preview_model.text_config(config["text"], vocab)).to(args.device)

    def timed_vae(steps: int) -> float:
        run = train.Settings(**{**recorded, "vae_steps": steps, "checkpoint_every": 10**9})
        with tempfile.TemporaryDirectory() as work:
            start = time.perf_counter()
            train.train_vae(vae, images, run, args.device, Path(work), float("inf"))
            return time.perf_counter() - start

    timed_vae(1)
    vae_step = timed_vae(args.steps) / args.steps
    side = s.size // 8
    latents = torch.randn(len(images), config["vae"]["latent_channels"], side, side)
    tokens = train.tokenize(captions, vocab)
    empty = train.tokenize([""], vocab)[0]
    index = torch.tensor([captions.index(c) for c in caps])

    unet_step = 1 / train.unet_steps_per_second(unet, text, tokens, empty, latents, index, s,
                                                args.device, steps=args.steps, warmup=1)
    vae_total, unet_total = vae_step * s.vae_steps, unet_step * s.unet_steps
    rows = [{"stage": "vae", "batch": s.vae_batch, "pixels": s.vae_crop, "steps": s.vae_steps,
             "seconds_per_step": round(vae_step, 3), "projected_seconds": round(vae_total)},
            {"stage": "unet", "batch": s.unet_batch, "pixels": s.size, "steps": s.unet_steps,
             "seconds_per_step": round(unet_step, 3), "projected_seconds": round(unet_total)}]
    print(f"# training cost on {args.device} ({torch.get_num_threads()} threads), settings of "
          f"models/preview/training.json, {args.steps} timed steps a stage")
    for r in rows:
        print(f"{r['stage']:5s} {r['steps']:6d} steps x {r['seconds_per_step']:7.3f} s = "
              f"{r['projected_seconds'] / 3600:6.2f} h")
    total = vae_total + unet_total
    print(f"total {total / 3600:.2f} h (rendering and encoding not counted)")
    write_results(args.out, f"train_cost-{'cuda' if args.device.startswith('cuda') else 'cpu'}",
                  {"settings": asdict(s), "timed_steps": args.steps,
                   "threads": torch.get_num_threads(),
                   "projected_hours": round(total / 3600, 2)}, rows)


if __name__ == "__main__":
    main()
