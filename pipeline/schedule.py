"""Noise schedules: the sigma sequence a sampler walks, and the model's own sigma <-> timestep map."""
from __future__ import annotations

import math

import torch


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """Karras et al. (2022), eq. 5: `steps` sigmas from sigma_max to sigma_min, then a final 0."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


SCHEDULES = {"karras": karras_sigmas}


def training_sigmas(config: dict) -> torch.Tensor:
    """The discrete sigmas the model was trained on, from its scheduler config (DDPM betas)."""
    n = config["num_train_timesteps"]
    if config.get("trained_betas"):
        betas = torch.tensor(config["trained_betas"], dtype=torch.float64)
    elif config["beta_schedule"] == "scaled_linear":
        betas = torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, n,
                               dtype=torch.float64) ** 2
    elif config["beta_schedule"] == "linear":
        betas = torch.linspace(config["beta_start"], config["beta_end"], n, dtype=torch.float64)
    else:
        raise ValueError(f"beta_schedule {config['beta_schedule']!r} is not supported; use a "
                         f"model whose scheduler is linear or scaled_linear")
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


def training_alphas_cumprod(config: dict) -> torch.Tensor:
    """ᾱ_t of each training timestep (float32), as training noises latents: 1 / (1 + σ_t²)."""
    return 1 / (1 + training_sigmas(config).float() ** 2)


def sigma_to_t(sigma: torch.Tensor, log_sigmas: torch.Tensor) -> torch.Tensor:
    """Fractional training timestep of `sigma`, interpolating linearly in log-sigma."""
    log_sigma = sigma.double().log()
    idx = torch.searchsorted(log_sigmas, log_sigma).clamp(1, len(log_sigmas) - 1)
    lo, hi = log_sigmas[idx - 1], log_sigmas[idx]
    w = ((log_sigma - lo) / (hi - lo)).clamp(0, 1)
    return (idx - 1 + w).float()


def check_range(config: dict, sigma_min: float, sigma_max: float, rel: float = 1e-3) -> list[str]:
    """Messages for every way the requested range disagrees with the model's training range."""
    s = training_sigmas(config)
    found = {"sigma_min": s[0].item(), "sigma_max": s[-1].item()}
    want = {"sigma_min": sigma_min, "sigma_max": sigma_max}
    return [f"{k} {want[k]} differs from the model's training {k} {found[k]:.4f}"
            for k in want if not math.isclose(want[k], found[k], rel_tol=rel, abs_tol=1e-4)]
