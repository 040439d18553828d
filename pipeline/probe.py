"""Attention statistics, captured from real sampling (the data of section 6's plots).

The probe stage runs the article's sampler on the [probe] generations up to one stated model
evaluation, and at that evaluation records, for every self-attention layer, the mean entropy of
each query's attention weights and their mean total (1 for a softmax; more for the top-k
denominator), and for one early layer a histogram of log attention probabilities. The weights are
computed explicitly, a block of queries at a time (pipeline/attention.py), so the statistics
never hold a whole attention matrix. It stops there: the rest of the trajectory is not needed.
"""
from __future__ import annotations

import torch

from . import attention


def entropy(weights: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each row of attention weights, normalised to sum to 1 first."""
    p = weights / weights.sum(-1, keepdim=True)
    return -torch.special.xlogy(p, p).sum(-1)


class _Stop(Exception):
    """Raised by the probing denoiser once its step has been measured."""


class Probe:
    """Accumulates statistics per generation while `active`; a batch row b belongs to
    generation b % gens (the sampler stacks the unconditional half, then the conditional)."""

    def __init__(self, gens: int, histogram_layer: str, bins: int, log_min: float):
        self.gens, self.histogram_layer = gens, histogram_layer
        self.bins, self.log_min = bins, log_min
        self.active = False
        self.layers: dict[str, dict] = {}
        self.histogram = torch.zeros(gens, bins, dtype=torch.float64)

    def hook(self, proc: attention.VariantProcessor):
        stats = self.layers.setdefault(proc.name, {
            "n": proc.n, "n_train": proc.n_train, "factor": proc.factor,
            "entropy": torch.zeros(self.gens, dtype=torch.float64),
            "mass": torch.zeros(self.gens, dtype=torch.float64), "rows": 0})

        def record(weights: torch.Tensor) -> None:
            b = weights.shape[0]
            per_row = entropy(weights).flatten(1).double().sum(1)  # [B]
            mass = weights.sum(-1).flatten(1).double().sum(1)
            for part in range(0, b, self.gens):
                stats["entropy"] += per_row[part:part + self.gens].cpu()
                stats["mass"] += mass[part:part + self.gens].cpu()
            stats["rows"] += weights[0].numel() // weights.shape[-1] * (b // self.gens)
            if proc.name == self.histogram_layer:
                logp = (weights / weights.sum(-1, keepdim=True)).log().clamp(min=self.log_min)
                for i in range(b):
                    kept = logp[i][weights[i] > 0].float()  # masked-out keys have no probability
                    self.histogram[i % self.gens] += torch.histc(
                        kept, self.bins, self.log_min, 0).double().cpu()
        return record

    def result(self, i: int, levels: int) -> dict:
        layers = []
        for name, st in self.layers.items():
            layers.append({"name": name, "level": attention.level_of(name, levels), "n": st["n"],
                           "n_train": st["n_train"], "factor": st["factor"],
                           "entropy": st["entropy"][i].item() / st["rows"],
                           "mass": st["mass"][i].item() / st["rows"]})
        counts = self.histogram[i]
        return {"layers": layers,
                "histogram": {"layer": self.histogram_layer, "log_min": self.log_min,
                              "bins": self.bins, "density": (counts / counts.sum()).tolist()}}


@torch.no_grad()
def measure(comps, spec, gens: list) -> list[dict]:
    """Sample `gens` (one size, one variant) up to the probe step and return their statistics."""
    from . import sampling

    p = spec.probe
    layers = attention.self_attention_layers(comps.unet)
    if p["layer"] >= len(layers):
        raise ValueError(f"[probe] layer {p['layer']} does not exist: this UNet has "
                         f"{len(layers)} self-attention layers (0..{len(layers) - 1})")
    probe = Probe(len(gens), layers[p["layer"]], p["bins"], float(p["log_min"]))
    denoise, x, sigmas = sampling.prepare(comps, spec, gens, probe)
    calls = []

    def probing(x, sigma):
        probe.active = len(calls) == p["step"]
        calls.append(sigma.item())
        out = denoise(x, sigma)
        if probe.active:
            raise _Stop
        return out

    try:
        sampling.SAMPLERS[spec.sampling["sampler"]](probing, x, sigmas)
    except _Stop:
        pass
    finally:
        sampling.restore(comps.unet)
    geometry = comps.info["geometry"]
    return [{**probe.result(i, geometry["unet_levels"]), "step": p["step"], "sigma": calls[-1],
             "train_size": geometry["train_size"]} for i in range(len(gens))]


# --- the `probe:<size>` task -------------------------------------------------------------------

def run(spec_path: str, model_json: str, device: str, size_key: str, out_dir: str,
        batch: str = "auto", speedups: str = "default") -> None:
    from pathlib import Path

    from . import model, sampling, spec as specmod
    from .files import atomic_write, json_bytes

    spec = specmod.load(spec_path)
    comps = model.load(model_json, device, speedups)
    gens = spec.probe_by_size()[size_key]
    out = Path(out_dir)
    for chunk in sampling.batches(gens, sampling.batch_size(comps, batch, gens)):
        for g, stats in zip(chunk, measure(comps, spec, chunk)):
            prov = {**sampling.provenance(spec, g, comps), "probe": spec.probe_config(),
                    "batch": [c.id for c in chunk]}
            atomic_write(out / g.probe_file, json_bytes({"provenance": prov, **stats}))
        print(f"probed {', '.join(c.id for c in chunk)} at step {spec.probe['step']}")
