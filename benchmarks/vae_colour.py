"""Does the VAE's colour term make its latents readable per pixel? (not a test; prints figures)

    .venv/bin/python benchmarks/vae_colour.py                      # CPU, short runs
    .venv/bin/python benchmarks/vae_colour.py --from-shipped     # fine-tune the shipped VAE
    .venv/bin/python benchmarks/vae_colour.py --device cuda --steps 1500 --batch 32 --crop 256

The article's approximate decoder reads RGB from one latent pixel at a time; the shipped
miniature's VAE lets it reach only about 22 dB. This trains the miniature's VAE twice, side by
side from the same seed and data, without and with the colour term (pipeline/train.py,
`colour_weight`), and for each: the reconstruction MSE on held-out portraits (what the term
costs), and the held-out PSNR of the approximate decoder distilled from it (what it buys). The
decoder is fitted as the `approx` task fits it (pipeline/approx_decoder.distil, the spec's
settings) but on encoded portraits instead of generated latents, which needs no UNet.

Short runs from scratch leave the VAE blurry, and a blurry VAE is easy to read per pixel; with
`--from-shipped` both runs start from the shipped, fully trained VAE instead (and a row with no
training at all shows where it starts), which is the regime the shipped model is in.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import ROOT, write_results


def main() -> None:
    import torch
    from diffusers import AutoencoderKL

    from pipeline import approx_decoder, portraits, preview_model, spec as specmod, train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", default="0,1", help="colour_weight values, comma-separated")
    ap.add_argument("--images", type=int, default=400, help="training portraits")
    ap.add_argument("--heldout", type=int, default=8)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--from-shipped", action="store_true",
                    help="start from models/preview's VAE instead of random weights")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    spec = specmod.load(ROOT / "figures.toml")
    captions = train.source(train.Settings(), spec.prompts)  # the default training set
    workers = min(16, os.cpu_count() or 1)
    _, images = train.render_images(captions, 0, args.images, 0, workers=workers)
    _, held = train.render_images(captions, 10**6, 10**6 + args.heldout, 0, workers=1)
    cfg = spec.approx
    rows = []
    print(f"# VAE from {'the shipped weights' if args.from_shipped else 'scratch'}, "
          f"{args.steps} steps, batch {args.batch}, {args.crop}px crops, {args.images} "
          f"portraits, on {args.device}; approx decoder fitted on {cfg['epochs']} epochs")
    print(f"{'colour_weight':>13s} {'steps':>6s} {'recon MSE':>10s} {'approx train dB':>16s} "
          f"{'approx held-out dB':>19s} {'seconds':>8s}")
    runs = [(float(w), args.steps) for w in args.weights.split(",")]
    if args.from_shipped:
        runs = [(0.0, 0)] + runs
    for weight, steps in runs:
        torch.manual_seed(0)
        if args.from_shipped:
            vae = AutoencoderKL.from_pretrained(ROOT / "models/preview", subfolder="vae",
                                                torch_dtype=torch.float32).to(args.device)
        else:
            vae = AutoencoderKL(**preview_model.MINI["vae"]).to(args.device)
        s = train.Settings(vae_steps=steps, vae_batch=args.batch, vae_crop=args.crop,
                           colour_weight=weight, warmup=min(200, args.steps // 5),
                           checkpoint_every=10**9)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            if steps:
                train.train_vae(vae, images, s, args.device, Path(work), float("inf"))
        seconds = time.perf_counter() - start
        pairs = {}
        with torch.no_grad():
            for name, batch in (("train", images[:16]), ("held", held)):
                x = train.to_tensor(batch).to(args.device)
                z = vae.encode(x).latent_dist.mean
                rec = vae.decode(z).sample.float()
                factor = x.shape[-1] // z.shape[-1]
                pairs[name] = (z.float().cpu(),
                               approx_decoder.downsample_targets(rec.cpu(), factor),
                               torch.nn.functional.mse_loss(rec.clamp(-1, 1), x).item())
        decoder, _ = approx_decoder.distil(*pairs["train"][:2], hidden=cfg["hidden"],
                                           epochs=cfg["epochs"], lr=cfg["lr"], seed=cfg["seed"])
        with torch.no_grad():
            fit = approx_decoder.psnr(decoder(pairs["train"][0]), pairs["train"][1])
            heldout = approx_decoder.psnr(decoder(pairs["held"][0]), pairs["held"][1])
        print(f"{weight:13g} {steps:6d} {pairs['held'][2]:10.5f} {fit:16.2f} {heldout:19.2f} "
              f"{seconds:8.1f}")
        rows.append({"colour_weight": weight, "steps": steps,
                     "recon_mse_heldout": round(pairs["held"][2], 5),
                     "approx_psnr_train_db": round(fit, 2),
                     "approx_psnr_heldout_db": round(heldout, 2), "seconds": round(seconds, 1)})
    tag = "cuda" if args.device.startswith("cuda") else "cpu"
    origin = "shipped" if args.from_shipped else "scratch"
    write_results(args.out, f"vae_colour-{origin}-{tag}",
                  {"device": args.device, "start": origin, "vae_steps": args.steps,
                   "batch": args.batch, "crop": args.crop, "images": args.images,
                   "heldout": args.heldout}, rows)


if __name__ == "__main__":
    main()
