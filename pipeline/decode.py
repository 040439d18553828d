"""Decoders: latents [B, 4, h, w] -> RGB [B, 3, 8h, 8w] in [-1, 1].

Every decoder shares the signature `decode(latents, net) -> images`, where `net` is the network
that does the work (the VAE, or the distilled ApproxDecoder).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def vae(latents: torch.Tensor, net) -> torch.Tensor:
    """The model's own VAE decoder (it upsamples 8x and invents detail on the way)."""
    param = next(net.parameters())
    z = latents.to(param.device, param.dtype) / net.config.scaling_factor
    return net.decode(z).sample.float().clamp(-1, 1).cpu()


@torch.no_grad()
def approx(latents: torch.Tensor, net) -> torch.Tensor:
    """Per-pixel colour conversion, then 8x nearest-neighbour upsampling (no invented detail)."""
    rgb = net(latents.float().cpu()).clamp(-1, 1)
    return F.interpolate(rgb, scale_factor=net.upsample, mode="nearest")


DECODERS = {"vae": vae, "approx": approx}


def to_pil(image: torch.Tensor):
    """One [3, H, W] image in [-1, 1] -> 8-bit RGB PIL image (round half up, deterministic)."""
    from PIL import Image

    arr = ((image.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy(), "RGB")


# --- the `decode:<image>` task -----------------------------------------------------------------

def run(spec_path: str, model_json: str, device: str, gen_id: str, decoder: str,
        latents_dir: str, approx_path: str, out: str) -> None:
    import json
    from pathlib import Path

    from . import approx_decoder, model
    from .files import write_png
    from .sampling import load_latents

    latents, prov = load_latents(Path(latents_dir) / f"{gen_id}.safetensors")
    if decoder == "vae":
        net = model.load(model_json, device).vae
        prov = {**prov, "decoder": "vae"}
    else:
        net, fit = approx_decoder.load(approx_path)
        prov = {**prov, "decoder": "approx", "approx_decoder": fit["sha256"]}
    image = to_pil(DECODERS[decoder](latents[None], net)[0])
    write_png(out, image, {"provenance": json.dumps(prov, sort_keys=True)})
