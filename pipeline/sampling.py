"""Sampling: classifier-free-guided denoising with DPM-Solver++ (2M) on a Karras schedule.

Samplers share one signature, `sampler(denoise, x, sigmas) -> x`, where `denoise(x, sigma)`
returns the model's estimate of the clean latents. The sampler's arithmetic is fp32 whatever the
UNet's dtype; the initial noise comes from a CPU generator per seed, so a seed gives the same
starting point on every device.
"""
from __future__ import annotations

import functools
import json

import torch

from . import interventions, schedule
from .interventions import restore  # noqa: F401 (used by hires_fix and probe)
from .variants import PROCEDURES, changes


@torch.no_grad()
def sample_dpmpp_2m(denoise, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """DPM-Solver++ (2M), Lu et al. 2022, in the sigma parameterisation (t = -log sigma)."""
    previous = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if sigma_next == 0:
            x = denoised
            break
        h = sigma.log() - sigma_next.log()
        if previous is not None:
            r = (sigmas[i - 1].log() - sigma.log()) / h
            estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
        else:
            estimate = denoised
        x = (sigma_next / sigma) * x - torch.expm1(-h) * estimate
        previous = denoised
    return x


SAMPLERS = {"dpmpp_2m": sample_dpmpp_2m}


@torch.no_grad()
def encode_prompts(comps, texts: list[str]) -> torch.Tensor:
    """CLIP hidden states for each text (padded to 77 tokens), in the UNet's dtype. Each text is
    encoded once per loaded model, however many batches use it."""
    cache = comps.__dict__.setdefault("_text_cache", {})
    new = [t for t in dict.fromkeys(texts) if t not in cache]
    if new:
        tok = comps.tokenizer(new, padding="max_length", truncation=True, return_tensors="pt",
                              max_length=comps.tokenizer.model_max_length)
        cache.update(zip(new, comps.text_encoder(tok.input_ids.to(comps.device))[0]))
    return torch.stack([cache[t] for t in texts])


def cfg_denoiser(comps, cond: torch.Tensor, uncond: torch.Tensor, guidance: float,
                 sigmas: torch.Tensor, clock=None):
    """Wrap the eps-predicting UNet as a denoiser D(x, sigma) with classifier-free guidance, for
    the sigmas of one sampling run; `clock.step` follows the step each call evaluates (a
    variant's step windows read it). The sigmas stay on the CPU (the step arithmetic never waits on
    the GPU); their timesteps go to the device once, in one copy, and each step indexes them, so
    no UNet call starts with a blocking host-to-device copy."""
    log_sigmas = schedule.training_sigmas(comps.scheduler_config).log()
    timesteps = schedule.sigma_to_t(sigmas, log_sigmas).to(comps.device)
    index = {float(s): i for i, s in enumerate(sigmas.tolist())}
    context = torch.cat([uncond, cond])

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        c_in = 1 / (sigma ** 2 + 1).sqrt()
        i = index[float(sigma)]
        if clock is not None:
            clock.step = i
        t = timesteps[i]
        inp = (torch.cat([x, x]) * c_in).to(comps.dtype, memory_format=comps.memory_format)
        eps = comps.unet(inp, t, encoder_hidden_states=context).sample.float()
        eps_uncond, eps_cond = eps.chunk(2)
        eps = eps_uncond + guidance * (eps_cond - eps_uncond)
        return x - sigma * eps

    return denoise


def initial_noise(gen, geometry: dict) -> torch.Tensor:
    f = geometry["vae_factor"]
    g = torch.Generator("cpu").manual_seed(gen.seed)
    return torch.randn((geometry["latent_channels"], gen.height // f, gen.width // f), generator=g)


def prepare(comps, spec, gens: list, probe=None):
    """Everything a sampler needs for a batch of one size and one variant:
    (denoise, x at sigma_max, sigmas). The variant (and an optional probe) is installed here;
    interventions.restore removes it."""
    assert len({(g.width, g.height, g.variant) for g in gens}) == 1, "one size/variant a batch"
    s = spec.sampling
    geometry = comps.info["geometry"]
    g0 = gens[0]
    clock = interventions.Clock(s["steps"])
    interventions.install(comps.unet, spec.variants, g0.variant, geometry, g0.width, g0.height,
                          clock, probe)
    sigmas = schedule.SCHEDULES[s["schedule"]](s["steps"], s["sigma_min"], s["sigma_max"],
                                               s["rho"])  # on the CPU, see cfg_denoiser
    texts = sorted({spec.prompts[g.prompt] for g in gens} | {s["negative_prompt"]})
    embedded = dict(zip(texts, encode_prompts(comps, texts)))  # each prompt encoded once
    cond = torch.stack([embedded[spec.prompts[g.prompt]] for g in gens])
    uncond = embedded[s["negative_prompt"]].expand_as(cond)
    x = torch.stack([initial_noise(g, geometry) for g in gens]).to(comps.device) * sigmas[0]
    return cfg_denoiser(comps, cond, uncond, s["guidance"], sigmas, clock), x, sigmas


@torch.no_grad()
def sample(comps, spec, gens: list, on_step=None) -> torch.Tensor:
    """Sample a batch of generations of one size and one variant; fp32 latents [B,4,h,w].
    `on_step()`, when given, is called after every model evaluation (a progress bar)."""
    from .variants import is_identity

    g0 = gens[0]
    procedure = [c for c in changes(spec.variants, g0.variant) if c["kind"] in PROCEDURES]
    if procedure and not is_identity(spec.variants, g0.variant, comps.info["geometry"],
                                     g0.width, g0.height):
        from . import hires_fix

        return hires_fix.sample(comps, spec, gens, procedure[0], on_step)
    try:
        denoise, x, sigmas = prepare(comps, spec, gens)
        if on_step is not None:
            model_eval = denoise

            def denoise(x, sigma):
                out = model_eval(x, sigma)
                on_step()
                return out

        return SAMPLERS[spec.sampling["sampler"]](denoise, x, sigmas).float().cpu()
    finally:  # the loaded model is shared across tasks: leave it as it was loaded
        interventions.restore(comps.unet)


# --- the `sample:<size>` task ------------------------------------------------------------------

def device_name(comps) -> str:
    if comps.device.startswith("cuda"):
        return f"cuda ({torch.cuda.get_device_name(comps.device)})"
    return "cpu"


from .freeze import SAMPLING_PATH  # noqa: E402 (the modules whose code decides latents)


@functools.cache
def code_digest(directory: str | None = None) -> str:
    """Hash of the code that computes latents (the modules the sampling path runs), without
    comments and docstrings (files.code_digest): an edit to them keeps the cache, any change to
    what runs invalidates it."""
    from pathlib import Path

    from .files import code_digest as digest_of

    return digest_of(Path(directory or Path(__file__).parent), SAMPLING_PATH)


def provenance(spec, gen, comps) -> dict:
    """What made these latents: the recipe, the model, the device and the software."""
    import diffusers

    return {**spec.recipe(gen), "generation": gen.id, "code": code_digest(),
            "model": comps.info["id"],
            "model_preview": comps.info["preview"], "device": device_name(comps),
            "dtype": str(comps.dtype).removeprefix("torch."), "autocast": comps.autocast,
            "cpu_threads": cpu_threads(comps),
            "layout": str(comps.memory_format).removeprefix("torch."),
            "speedups": list(comps.speedups), "torch": torch.__version__,
            "diffusers": diffusers.__version__}


def cache_key(prov: dict) -> str:
    """Latents are reused only if everything that determines them is unchanged: the recipe, the
    model's fingerprint, the device, dtype, autocast, memory layout, UNet speed-ups and CPU
    thread count, the torch and diffusers versions and the sampling code (all in the provenance; the batch it ran in is
    recorded, not keyed)."""
    from .spec import digest

    return digest({k: v for k, v in prov.items() if k != "batch"})


def batch_size(comps, batch: str, gens: list) -> int:
    """`batch=auto`: one image at a time on the CPU (so an image's bytes never depend on what
    else needed sampling in that run; the CPU's parallelism comes from cpu_workers instead). On a GPU, as many
    generations as fit in MEMORY_SHARE of the free memory, measured for this size."""
    if batch != "auto":
        return max(1, int(batch))
    if not comps.device.startswith("cuda") or not gens:
        return 1
    per_gen = bytes_per_generation(comps, gens[0].width, gens[0].height)
    free, _ = torch.cuda.mem_get_info(comps.device)
    return fit_batch(free, per_gen, len(gens))


def fit_batch(free_bytes: int, per_generation: int, wanted: int) -> int:
    """How many generations to batch: all that are wanted, at most MAX_BATCH, within
    MEMORY_SHARE of the free memory, and always at least one."""
    return max(1, min(wanted, MAX_BATCH, int(free_bytes * MEMORY_SHARE // max(per_generation, 1))))


MEMORY_SHARE = 0.6  # of the free GPU memory, for one batch's activations (the VAE needs more)
MAX_BATCH = 16      # generations per batch (32 UNet samples with the CFG pair)


@torch.no_grad()
def bytes_per_generation(comps, width: int, height: int) -> int:
    """Peak extra GPU memory of one UNet forward on one CFG pair, and of one VAE decode."""
    g = comps.info["geometry"]
    f = g["vae_factor"]
    x = torch.zeros(2, g["latent_channels"], height // f, width // f, device=comps.device,
                    dtype=comps.dtype).to(memory_format=comps.memory_format)
    ctx = torch.zeros(2, 77, g["cross_attention_dim"], device=comps.device, dtype=comps.dtype)
    worst = 0
    for run in (lambda: comps.unet(x, torch.tensor(500.0, device=comps.device),
                                   encoder_hidden_states=ctx),
                lambda: comps.vae.decode(x[:1])):
        torch.cuda.synchronize(comps.device)
        base = torch.cuda.memory_allocated(comps.device)
        torch.cuda.reset_peak_memory_stats(comps.device)
        run()
        worst = max(worst, torch.cuda.max_memory_allocated(comps.device) - base)
    return worst


def batches(gens: list, n: int):
    """Chunks of at most n generations that share a size and a variant."""
    groups: dict[tuple, list] = {}
    for g in gens:
        groups.setdefault((g.size_key, g.variant), []).append(g)
    for group in groups.values():
        for i in range(0, len(group), n):
            yield group[i:i + n]


def cpu_workers(comps) -> int:
    """How many generations the CPU samples at once: one per core, each on CPU_THREADS threads
    with its own copy of the UNet, as many copies as fit in a quarter of the available memory.
    On two cores, two one-thread workers sample more images per second than one two-thread call
    at a time (the small UNet's operators do not keep two threads busy; benchmarks/cpu_path.py),
    and a one-thread generation's bytes do not depend on how many cores the machine has."""
    import os

    unet_bytes = sum(p.numel() * p.element_size() for p in comps.unet.parameters())
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        available = 4 * unet_bytes
    return max(1, min(os.cpu_count() or 1, int(available * MEMORY_SHARE_CPU // unet_bytes)))


CPU_THREADS = 1         # threads a CPU worker's generation runs on

MEMORY_SHARE_CPU = 0.25  # of the available memory, for the workers' UNet copies


def cpu_threads(comps) -> int | None:
    """Threads one generation is sampled on (part of its provenance and cache key: a CPU's
    reductions may split differently over another count); None on a GPU."""
    if comps.device.startswith("cuda"):
        return None
    return CPU_THREADS if "cpu_workers" in comps.speedups else torch.get_num_threads()


def worker_components(comps, n: int) -> list:
    """n copies of the loaded components for CPU worker threads, sharing everything but the UNet
    (each its own deep copy, so a variant installed on one does not touch the others) and the
    text cache (each encodes on its own thread count). Made once per loaded model."""
    import copy
    import dataclasses

    made = comps.__dict__.setdefault("_workers", [])
    while len(made) < n:
        made.append(dataclasses.replace(comps, unet=copy.deepcopy(comps.unet)))
    return made[:n]


def sample_generations(comps, spec, gens: list, batch: str = "auto", done=None,
                       on_step=None) -> None:
    """Sample `gens` in chunks of one size and variant (`batch` generations each) and call
    `done(chunk, latents)` in the calling thread as each chunk finishes. The chunks run one after
    another, except with the `cpu_workers` speed-up: then each runs on CPU_THREADS threads,
    cpu_workers() at a time."""
    chunks = list(batches(gens, batch_size(comps, batch, gens)))
    if "cpu_workers" not in comps.speedups or comps.device.startswith("cuda"):
        for chunk in chunks:
            done(chunk, sample(comps, spec, chunk, on_step))
        return
    import queue
    from concurrent.futures import ThreadPoolExecutor, as_completed

    free = queue.SimpleQueue()
    for worker in worker_components(comps, min(cpu_workers(comps), len(chunks)) or 1):
        free.put(worker)

    def job(chunk):
        torch.set_num_threads(CPU_THREADS)  # this thread's own OpenMP setting
        worker = free.get()
        try:
            return sample(worker, spec, chunk, on_step)
        finally:
            free.put(worker)

    threads = torch.get_num_threads()
    torch.set_num_threads(CPU_THREADS)
    try:
        with ThreadPoolExecutor(free.qsize()) as pool:
            futures = {pool.submit(job, chunk): chunk for chunk in chunks}
            for future in as_completed(futures):
                done(futures[future], future.result())
    finally:
        torch.set_num_threads(threads)


def model_calls(spec, gen, geometry: dict) -> int:
    """How many UNet evaluations (CFG pairs) sampling `gen` takes: the steps, and for the hires
    fix the trained-size run plus its second stage."""
    from .hires_fix import start_step
    from .variants import is_identity

    steps = spec.sampling["steps"]
    for change in changes(spec.variants, gen.variant):
        if change["kind"] == "hires" and not is_identity(spec.variants, gen.variant, geometry,
                                                         gen.width, gen.height):
            return steps + steps - start_step(steps, change["denoise"])
    return steps


def run(spec_path: str, model_json: str, device: str, size_key: str, out_dir: str,
        batch: str = "auto", eval_seeds: str = "0", speedups: str = "default") -> None:
    from pathlib import Path

    from . import model, progress, spec as specmod
    from .files import atomic_write, safetensors_bytes, safetensors_metadata

    from .variants import VariantError, check_geometry

    spec = specmod.load(spec_path)
    comps = model.load(model_json, device, speedups)
    try:  # a level this model does not have: one line naming the variant
        check_geometry(spec.variants, comps.info["geometry"])
    except VariantError as err:
        raise specmod.SpecError(f"{Path(spec_path).name} {err}") from None
    gens = spec.by_size(evaluation_generations(spec, comps.info, int(eval_seeds)))[size_key]
    for message in schedule.check_range(comps.scheduler_config, spec.sampling["sigma_min"],
                                        spec.sampling["sigma_max"]):
        print(f"warning: {message}")
    out = Path(out_dir)
    todo = []
    for g in gens:
        path = out / f"{g.id}.safetensors"
        key = cache_key(provenance(spec, g, comps))
        if not (path.exists() and safetensors_metadata(path).get("key") == key):
            todo.append(g)
    finished = []

    def write(chunk, latents):
        finished.extend(chunk)
        for g, z in zip(chunk, latents):
            prov = provenance(spec, g, comps)
            key = cache_key(prov)  # what the latents depend on; the batch is only recorded
            prov["batch"] = [c.id for c in chunk]
            meta = {"key": key, "provenance": json.dumps(prov, sort_keys=True)}
            atomic_write(out / f"{g.id}.safetensors", safetensors_bytes({"latents": z}, meta))
        print(f"sampled {', '.join(c.id for c in chunk)} ({len(finished)}/{len(todo)})")

    what = f"{size_key}: {len(todo)} generations"
    with progress.steps_bar(sum(model_calls(spec, g, comps.info["geometry"]) for g in todo),
                            what) as bar:
        sample_generations(comps, spec, todo, batch, write, on_step=bar.update)


def evaluation_generations(spec, info: dict, seeds: int) -> list:
    """What the evaluation needs sampled: only on the preview miniature (its detector's domain)."""
    if info.get("kind") != "preview" or not seeds:
        return []
    return spec.evaluation_generations(seeds, info["geometry"])


def load_latents(path) -> tuple[torch.Tensor, dict]:
    from safetensors.torch import load_file

    from .files import safetensors_metadata

    return load_file(str(path))["latents"], json.loads(safetensors_metadata(path)["provenance"])
