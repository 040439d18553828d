"""The VAE encoder's log-variance anomaly (section 3's second test).

SD 1.x's VAE encoder is reported to put a few latent positions at the floor of its
log-variance (diffusers' DiagonalGaussianDistribution clamps log-variance to [-30, 20]), and
to use those positions to carry information about the whole image: perturb the latent there and
the decoded image changes far outside that position's 8x8 pixel patch. This stage checks that on
the article's own images, with any diffusers AutoencoderKL:

1. encode each of the article's trained-size VAE decodes and keep the log-variance map
   (per latent position, the minimum over channels: the anomaly shows as a hole, not a peak);
2. detect anomalous positions (`detect`): at or within `floor_margin` of the clamp floor, or
   below the map's median by more than `robust_z` robust standard deviations (1.4826 x the
   median absolute deviation). The floor test is the documented flaw itself; the robust test
   catches a position that is extreme for its image without reaching the floor, and, being built
   from the median and the MAD, is not dragged along by the very outliers it looks for;
3. perturb the posterior mean at the most anomalous position and at an ordinary one by the same
   amount, decode both, and measure the change outside the perturbed patch (`effect`).
"""
from __future__ import annotations

import json

import torch

MAD_TO_STD = 1.4826  # MAD x this = standard deviation, for normally distributed values


def clamp_range() -> tuple[float, float]:
    """The log-variance range diffusers clamps to (floor, ceiling), read from diffusers itself."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    def clamped(value: float) -> float:
        return DiagonalGaussianDistribution(torch.full((1, 2, 1, 1), value)).logvar.min().item()

    return clamped(-1e9), clamped(1e9)



def detect(logvar_map: torch.Tensor, floor: float, floor_margin: float,
           robust_z: float) -> list[dict]:
    """Anomalous positions of one [h, w] log-variance map, most extreme first."""
    flat = logvar_map.flatten().double()
    median = flat.median()
    spread = MAD_TO_STD * (flat - median).abs().median()
    z = (flat - median) / spread if spread > 0 else torch.zeros_like(flat)
    at_floor = flat <= floor + floor_margin
    outlier = z <= -robust_z
    found = []
    for i in torch.nonzero(at_floor | outlier).flatten().tolist():
        y, x = divmod(i, logvar_map.shape[1])
        found.append({"y": y, "x": x, "logvar": flat[i].item(), "z": z[i].item(),
                      "at_floor": bool(at_floor[i]), "outlier": bool(outlier[i])})
    return sorted(found, key=lambda a: a["logvar"])


def ordinary_position(logvar_map: torch.Tensor, avoid: list[tuple[int, int]],
                      distance: int = 4) -> tuple[int, int]:
    """The position whose log-variance is closest to the median, away from the border and at
    least `distance` positions from every anomaly (ties broken by position: deterministic)."""
    h, w = logvar_map.shape
    median = logvar_map.flatten().median()
    best = None
    for y in range(distance, h - distance):
        for x in range(distance, w - distance):
            if any(max(abs(y - ay), abs(x - ax)) < distance for ay, ax in avoid):
                continue
            key = (abs(logvar_map[y, x] - median).item(), y, x)
            best = min(best, key) if best else key
    if best is None:
        raise ValueError("no ordinary position far enough from every anomaly and the border")
    return best[1], best[2]


def perturb(latents: torch.Tensor, y: int, x: int, delta: float) -> torch.Tensor:
    """Add `delta` to every channel of one latent position ([B, C, h, w])."""
    out = latents.clone()
    out[:, :, y, x] += delta
    return out


def effect(latents: torch.Tensor, decode, net, y: int, x: int, delta: float, factor: int,
           threshold: float) -> tuple[dict, torch.Tensor]:
    """Decode `latents` with and without the perturbation at (y, x); measure the change outside
    that position's factor x factor pixel patch. `decode(latents, net)` is any of
    pipeline/decode.py's decoders (images in [-1, 1]). Returns (numbers, change map [H, W] in
    [0, 1] units, mean over RGB)."""
    before = decode(latents, net)
    after = decode(perturb(latents, y, x, delta), net)
    change = ((after - before).abs() / 2).mean(1)[0]  # [-1, 1] -> [0, 1] units
    outside = torch.ones_like(change, dtype=torch.bool)
    outside[y * factor:(y + 1) * factor, x * factor:(x + 1) * factor] = False
    out = change[outside]
    return {"y": y, "x": x, "delta": delta, "threshold": threshold,
            "changed_outside": (out > threshold).double().mean().item(),
            "mean_change_outside": out.double().mean().item(),
            "mean_change_inside": change[~outside].double().mean().item(),
            "max_change_outside": out.max().item()}, change


@torch.no_grad()
def encode(vae, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean (scaled by the VAE's scaling factor, as the decoders expect) and the
    log-variance map (min over channels) of one [3, H, W] image in [-1, 1]."""
    param = next(vae.parameters())
    dist = vae.encode(image[None].to(param.device, param.dtype)).latent_dist
    mean = dist.mean.float().cpu() * vae.config.scaling_factor
    return mean, dist.logvar.float().cpu()[0].amin(0)


def from_png(path) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1


# --- the `vae_anomaly` task --------------------------------------------------------------------

def run(spec_path: str, model_json: str, device: str, vae_ref: str, images_dir: str,
        out_json: str, out_maps: str) -> None:
    from pathlib import Path

    from . import decode, geometry, model, spec as specmod
    from .files import atomic_write, json_bytes, safetensors_bytes

    spec = specmod.load(spec_path)
    cfg = spec.vae_anomaly
    vae, vae_info = model.load_vae(model_json, vae_ref, device)
    factor = geometry.vae_factor(vae.config)
    floor, ceiling = clamp_range()
    images, maps = [], {}
    for im in spec.vae_anomaly_images():
        mean, logvar = encode(vae, from_png(Path(images_dir) / im.file))
        found = detect(logvar, floor, cfg["floor_margin"], cfg["robust_z"])
        maps[f"{im.gen.id}.logvar"] = logvar
        images.append({"image": im.file, "generation": im.gen.id, "anomalies": found,
                       "logvar_median": logvar.median().item(), "logvar_min": logvar.min().item()})
        if im.gen == spec.vae_anomaly_subject():
            subject, subject_mean, subject_found = im, mean, found
    # the experiment: the most anomalous position (or, if none is flagged, the lowest one)
    logvar = maps[f"{subject.gen.id}.logvar"]
    if subject_found:
        spot = (subject_found[0]["y"], subject_found[0]["x"])
    else:
        spot = divmod(int(logvar.argmin()), logvar.shape[1])
    plain = ordinary_position(logvar, [spot] + [(a["y"], a["x"]) for a in subject_found])
    delta = cfg["perturbation"] * subject_mean.std().item()
    experiment = {}
    for name, (y, x) in (("anomalous", spot), ("ordinary", plain)):
        numbers, change = effect(subject_mean, decode.vae, vae, y, x, delta, factor,
                                 cfg["threshold"])
        experiment[name] = {**numbers, "logvar": logvar[y, x].item()}
        maps[f"change.{name}"] = change
    result = {"floor": floor, "ceiling": ceiling, "factor": factor, "config": cfg, "vae": vae_info,
              "subject": subject.file, "subject_flagged": bool(subject_found),
              "images": images, "experiment": experiment,
              "flagged_images": sum(1 for i in images if i["anomalies"])}
    atomic_write(out_maps, safetensors_bytes({k: v.contiguous() for k, v in maps.items()},
                                             {"vae": json.dumps(vae_info)}))
    atomic_write(out_json, json_bytes(result))
    print(f"vae_anomaly: {result['flagged_images']} of {len(images)} images flagged; "
          f"change outside the patch: anomalous "
          f"{experiment['anomalous']['changed_outside']:.2%}, ordinary "
          f"{experiment['ordinary']['changed_outside']:.2%}")
