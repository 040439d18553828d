"""The approximate decoder: a per-pixel MLP from 4 latent channels to RGB, distilled from the VAE.

It looks at one latent pixel at a time (no upsampling, no neighbours), so whatever it shows
cannot depend on the image's size. The article prints the `ApproxDecoder` class below verbatim.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ApproxDecoder(nn.Module):
    def __init__(self, latent_channels: int = 4, hidden: int = 12, upsample: int = 8):
        super().__init__()
        self.upsample = upsample  # how the article displays it: nearest-neighbour, 8x
        self.net = nn.Sequential(
            nn.Linear(latent_channels, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 3),
        )

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, 4, h, w] latents -> [B, 3, h, w] RGB in about [-1, 1], each pixel on its own."""
        return self.net(latents.movedim(1, -1)).movedim(-1, 1)


def downsample_targets(images: torch.Tensor, factor: int) -> torch.Tensor:
    """VAE decodes [B, 3, H, W] in [-1, 1] -> area-averaged [B, 3, H/f, W/f]: the colour each
    latent pixel stands for."""
    return F.avg_pool2d(images.clamp(-1, 1), factor)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for signals in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(pred.clamp(-1, 1), target).item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()


def pixels(latents: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten batches of maps into one table of (latent pixel, colour) pairs."""
    return latents.movedim(1, -1).reshape(-1, latents.shape[1]), \
        targets.movedim(1, -1).reshape(-1, 3)


def distil(latents: torch.Tensor, targets: torch.Tensor, *, hidden: int = 12, epochs: int = 400,
           lr: float = 5e-2, seed: int = 0, upsample: int = 8) -> tuple[ApproxDecoder, list[float]]:
    """Fit the decoder to (latent, colour) pairs: full batch, MSE, AdamW. Returns it and the loss
    per epoch. Runs on the CPU in fp32 so the result is the same on every machine."""
    torch.manual_seed(seed)
    x, y = pixels(latents.float().cpu(), targets.float().cpu())
    decoder = ApproxDecoder(x.shape[1], hidden, upsample)
    opt = torch.optim.AdamW(decoder.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(decoder.net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return decoder.eval().requires_grad_(False), losses


# --- the `approx` task: distil from the spec's own training generations -------------------------

def save(decoder: ApproxDecoder, path, fit: dict) -> dict:
    import hashlib
    import json

    from .files import atomic_write, safetensors_bytes

    config = {"latent_channels": decoder.net[0].in_features, "hidden": decoder.net[0].out_features,
              "upsample": decoder.upsample}
    blob = safetensors_bytes(decoder.state_dict(), {"config": json.dumps(config, sort_keys=True)})
    fit = {**fit, **config, "sha256": hashlib.sha256(blob).hexdigest()}
    atomic_write(path, blob)
    return fit


def load(path) -> tuple[ApproxDecoder, dict]:
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    from .files import read_json, safetensors_metadata

    config = json.loads(safetensors_metadata(path)["config"])
    decoder = ApproxDecoder(**config)
    decoder.load_state_dict(load_file(str(path)))
    return decoder.eval().requires_grad_(False), read_json(Path(path).with_suffix(".json"))


def run(spec_path: str, model_json: str, device: str, latents_dir: str, out: str) -> None:
    """Distil from the training generations; measure PSNR on the held-out ones."""
    from pathlib import Path

    from . import decode, model, spec as specmod
    from .files import write_json
    from .sampling import load_latents

    spec = specmod.load(spec_path)
    comps = model.load(model_json, device)
    factor = comps.info["geometry"]["vae_factor"]

    def pairs(gens):
        zs = torch.stack([load_latents(Path(latents_dir) / f"{g.id}.safetensors")[0]
                          for g in gens])
        images = torch.cat([decode.vae(z[None], comps.vae) for z in zs])
        return zs, downsample_targets(images, factor)

    cfg = spec.approx
    z_train, y_train = pairs(spec.approx_train)
    z_held, y_held = pairs(spec.approx_heldout)
    decoder, losses = distil(z_train, y_train, hidden=cfg["hidden"], epochs=cfg["epochs"],
                             lr=cfg["lr"], seed=cfg["seed"], upsample=factor)
    with torch.no_grad():
        fit = {"psnr_train_db": round(psnr(decoder(z_train), y_train), 3),
               "psnr_heldout_db": round(psnr(decoder(z_held), y_held), 3),
               "loss_first": losses[0], "loss_last": losses[-1],
               "epochs": cfg["epochs"], "lr": cfg["lr"], "train_pixels": int(z_train[:, 0].numel()),
               "heldout_pixels": int(z_held[:, 0].numel()), "model": comps.info["id"],
               "train": [g.id for g in spec.approx_train],
               "heldout": [g.id for g in spec.approx_heldout]}
    fit = save(decoder, out, fit)
    write_json(Path(out).with_suffix(".json"), fit)
    print(f"approx decoder: held-out PSNR {fit['psnr_heldout_db']} dB "
          f"(train {fit['psnr_train_db']} dB)")
