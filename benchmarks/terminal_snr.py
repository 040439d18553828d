"""Does a model lose its latents' channel means when sampling from pure noise? (prints figures)

    .venv/bin/python benchmarks/terminal_snr.py --model build/mini-cpu/model --tag candidate-3400

SD 1.5's scaled-linear schedule keeps sqrt(alpha_bar) = 0.068 of the signal at t = 999, so a UNet
can read each image's per-channel latent mean from the noisy input it is trained on; sampling
starts from pure noise, which has none. This measures, on the model given: the channel means of
encoded training portraits (items held out of the UNet's training set are not needed: only the
mean matters), and the channel means of latents sampled by a plain DDIM loop (written here from
the training formulas, not the pipeline's sampler, so a sampler bug cannot hide in it) from (a)
pure noise and (b) pure noise plus sqrt(alpha_bar at t=999) x the data's channel means.
If (a) is far from the data and (b) is near it, the model reads the means from that trace.
It also prints each channel's spread within an image (a low-contrast model's samples have less).
"""
from __future__ import annotations

import argparse

from common import ROOT, write_results


def main() -> None:
    import torch

    from pipeline import model, portraits, sampling, schedule, spec as specmod, train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="preview")
    ap.add_argument("--tag", default="")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    spec = specmod.load(ROOT / "figures.toml")
    info = model.prepare(args.model, ROOT / "build" / "terminal_snr-model.json")
    comps = model.load(str(ROOT / "build" / "terminal_snr-model.json"), "cpu")
    captions = train.source(train.Settings(), spec.prompts)  # the default training set
    _, images = train.render_images(captions, 0, args.images, seed=1, size=portraits.SIZE)
    data = train.encode(comps.vae, images, "cpu", 8) * comps.vae.config.scaling_factor
    means = data.mean((0, 2, 3))
    alphas = schedule.training_alphas_cumprod(comps.scheduler_config)
    context = sampling.encode_prompts(comps, [spec.prompts[sorted(spec.prompts)[0]]])
    context = context.expand(args.samples, *context.shape[1:])
    side = portraits.SIZE // comps.info["geometry"]["vae_factor"]
    ts = torch.linspace(len(alphas) - 1, 0, args.steps).round().long()

    @torch.no_grad()
    def ddim(shift: bool) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(args.samples, data.shape[1], side, side, generator=g)
        if shift:
            x = x + alphas[ts[0]].sqrt() * means.view(1, -1, 1, 1)
        for i, t in enumerate(ts):
            a = alphas[t]
            eps = comps.unet(x, t, encoder_hidden_states=context).sample
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            if i + 1 < len(ts):
                nxt = alphas[ts[i + 1]]
                x = nxt.sqrt() * x0 + (1 - nxt).sqrt() * eps
        return x0

    def row(name: str, latents: torch.Tensor) -> dict:
        """Each channel's mean, and its spread within an image (averaged over images)."""
        m, s = latents.mean((0, 2, 3)), latents.std((2, 3)).mean(0)
        return {"latents": name, **{f"mean_{c}": round(v, 3) for c, v in enumerate(m.tolist())},
                **{f"spread_{c}": round(v, 3) for c, v in enumerate(s.tolist())}}

    rows = [row("encoded portraits", data)]
    for name, shift in (("DDIM from pure noise", False),
                        ("DDIM from noise + 0.068 x data means", True)):
        rows.append(row(name, ddim(shift)))
    for r in rows:
        print(f"{r['latents']:40s}", " ".join(f"{v:7.3f}" for k, v in r.items() if k != "latents"))
    path = write_results(args.out, "terminal_snr-cpu",
                         {"model": info["id"], "sqrt_alpha_bar_last": round(
                             alphas[ts[0]].sqrt().item(), 4), "images": args.images,
                          "samples": args.samples, "ddim_steps": args.steps,
                          "prompt": sorted(spec.prompts)[0]}, rows, args.tag)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
