"""Training the preview miniature: an SD-1.5-shaped model trained on portraits the pipeline renders.

Two stages, as SD itself was made:
1. `AutoencoderKL` (4 latent channels, 8x factor) on random crops of rendered portraits: MSE
   reconstruction plus a small KL term. Its `scaling_factor` is set, as SD's 0.18215 was, to one
   over the standard deviation of the latents it produces. With `colour_weight` > 0 a third term
   asks each latent pixel's mean to carry its 8x8 patch's average colour linearly: a 1x1
   convolution (4 -> 3, trained alongside, then dropped) must read that colour from the latent
   pixel alone. SD 1.5's VAE has this property without being asked (a 4x3 matrix gives a fair
   preview of its latents); a small VAE spreads colour over neighbouring latent pixels instead,
   and the article's per-pixel approximate decoder then has less to read.
2. `UNet2DConditionModel` (SD 1.5's level structure, pipeline/preview_model.py MINI) with a CLIP
   text encoder trained alongside it, on the encoded 512x512 portraits: epsilon prediction on SD
   1.5's scaled-linear 1000-step schedule, the caption dropped (replaced by "") CAPTION_DROPOUT of
   the time so that classifier-free guidance against the empty prompt means what it means in SD.
   The weights kept are an exponential moving average.

Both stages run in one resumable loop (pipeline/training_loop.py: Accelerate's checkpoints, with
diffusers' EMAModel for the UNet's averaged weights and `compute_snr` for its loss weights).
Every random draw (data, crops, timesteps, noise) is seeded by (seed, step), and a checkpoint
holds the loop's whole state, so a run stopped at any step and resumed gives the run that was
never stopped; a checkpoint made under other settings is refused. `run` writes the model in
diffusers layout (fp16 weights) with `training.json`: the provenance, the loss curves and the
whole run's time.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from . import approx_decoder, captions as captionsmod, portraits, preview_model  # noqa: E402
from .files import atomic_write, json_bytes  # noqa: E402
from .training_loop import CheckpointError, Stage, checkpoint_folder, fit, lr_at  # noqa: E402,F401

CAPTION_DROPOUT = 0.1


@dataclass
class Settings:
    """A training run's settings. The defaults are the shipped weights' recipe (as their
    training.json records, which a test checks), made to fit two CPU cores; the GPU-trained model
    shipped before them used the values noted in brackets beside each field."""
    seed: int = 0
    images: int = 6000          # rendered portraits the UNet trains on
    size: int = 512             # their side (SD 1.5's trained size; smaller only for smoke tests)
    vae_images: int = 1500      # of those, the first ones, for the VAE
    vae_steps: int = 2000       # (GPU-trained: 1500)
    vae_batch: int = 16         # (32)
    vae_crop: int = 128         # (256)
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    colour_weight: float = 0.3  # the latent-colour term (0: off; GPU-trained: 0)
    centre_latents: bool = True   # fold each latent channel's mean into the VAE (False)
    unet_steps: int = 3400      # (1800)
    unet_batch: int = 16        # (64)
    unet_lr: float = 1e-3
    min_snr_gamma: float = 5.0  # min-SNR loss weighting, min(SNR, γ)/SNR (0: plain MSE; 0)
    encode_bf16: bool = True    # encode the training set under bf16 autocast (False)
    attention_heads: int = 1    # heads in every UNet attention layer (0: MINI's 4; 0)
    warmup: int = 200
    ema: float = 0.999
    checkpoint_every: int = 500
    captions: str = "varied"    # "varied": each item described in its own words (pipeline/captions.py);
                                # "fixed": six captions (portraits.training_captions) ("fixed")
    tokenizer: str = "words"    # "words": a token per caption word; "bytes": a token per byte ("bytes")

    def __post_init__(self):
        for name, allowed in (("captions", ("fixed", "varied")),
                              ("tokenizer", ("bytes", "words"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: use one of {allowed}")


def _progress(total: int, initial: int, desc: str):
    """A tqdm bar with the loss; written to a log file too (a background run reports its
    progress there), every 30 s rather than on every step."""
    import sys

    from tqdm.auto import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=tty,
                mininterval=0.1 if tty else 30)


def _rng(seed: int, *keys: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(int(np.random.SeedSequence([seed, *keys])
                                                  .generate_state(1)[0]))


def source(s: Settings, prompts: dict[str, str]) -> dict:
    """Where the training items' captions come from, as keys and records name it."""
    if s.captions == "fixed":
        return {"captions": "fixed", "fixed": portraits.training_captions(prompts)}
    return {"captions": "varied", "caption_version": captionsmod.VERSION,
            "prompts": dict(sorted(prompts.items()))}


def words(s: Settings, prompts: dict[str, str]) -> list[str]:
    """The tokenizer's whole-word tokens (none for the byte-level tokenizer)."""
    return captionsmod.vocabulary(prompts) if s.tokenizer == "words" else []


def dataset_item(src: dict, index: int, seed: int, size: int) -> tuple[str, np.ndarray]:
    if src["captions"] == "fixed":
        return portraits.dataset_item(src["fixed"], index, seed, size)
    return captionsmod.dataset_item(src["prompts"], index, seed, size)


def render_images(src: dict, start: int, stop: int, seed: int, workers: int = 0,
                  size: int = portraits.SIZE) -> tuple[list[str], np.ndarray]:
    """Items start..stop of the training set: captions and uint8 [N, size, size, 3] images."""
    args = [(src, i, seed, size) for i in range(start, stop)]
    if workers > 1:
        from multiprocessing import get_context

        with get_context("fork").Pool(workers) as pool:
            items = pool.starmap(dataset_item, args, chunksize=16)
    else:
        items = [dataset_item(*a) for a in args]
    return [c for c, _ in items], np.stack([im for _, im in items])


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def _autocast(device: str):
    """bf16 autocast on every device: on a CPU with AMX (these machines' Xeons) a UNet step at
    batch 16 took about 1.2 s instead of 2.0 s in fp32 (timed once by hand, not a benchmark);
    the GPU runs used it from the start."""
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)


def _save_checkpoint(path: Path, state: dict) -> None:
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


VAE_FIELDS = ("seed", "size", "vae_images", "vae_steps", "vae_batch", "vae_crop", "vae_lr",
              "kl_weight", "colour_weight", "warmup")


def stage_settings(s: Settings, stage: str, src: dict) -> dict:
    """What decides a stage's result: a checkpoint made under anything else is refused. The VAE
    stage depends on its own fields and the images; the UNet stage on every setting (the
    latents it trains on come from the VAE's), except how often it checkpoints."""
    fields = asdict(s)
    if stage == "vae":
        fields = {k: fields[k] for k in VAE_FIELDS}
    else:
        fields.pop("checkpoint_every")
    return {**fields, "renderer_version": portraits.VERSION, "source": src,
            "caption_dropout": CAPTION_DROPOUT}


def train_vae(vae, images: np.ndarray, s: Settings, device: str, work: Path,
              deadline: float = math.inf, src: dict | None = None,
              stop_at: int | None = None):
    """Stage 1 on `images` (uint8 NHWC). Returns the loop's Progress (curve: reconstruction MSE)
    and whether the stage finished."""
    head = colour_head(vae, s.seed).to(device)
    modules = [vae] + ([head] if s.colour_weight else [])
    opt = torch.optim.AdamW([p for m in modules for p in m.parameters()], lr=s.vae_lr,
                            weight_decay=0.0)
    n, side = len(images), images.shape[1]

    def step(k: int):
        g = _rng(s.seed, 1, k)
        idx = torch.randint(n, (s.vae_batch,), generator=g).numpy()
        ys = torch.randint(side - s.vae_crop + 1, (s.vae_batch,), generator=g).tolist()
        xs = torch.randint(side - s.vae_crop + 1, (s.vae_batch,), generator=g).tolist()
        crops = np.stack([images[i, y:y + s.vae_crop, x:x + s.vae_crop]
                          for i, y, x in zip(idx, ys, xs)])
        x = to_tensor(crops).to(device)
        with _autocast(device):
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(
                posterior.mean.shape, generator=g).to(device)
            rec = vae.decode(z).sample
        mse = torch.nn.functional.mse_loss(rec.float(), x)
        loss = mse + s.kl_weight * posterior.kl().mean()
        if s.colour_weight:
            loss = loss + s.colour_weight * colour_loss(head, posterior.mean.float(), x)
        return loss, mse.item()

    stage = Stage("vae", s.vae_steps, s.vae_lr, s.warmup, s.checkpoint_every,
                  stage_settings(s, "vae", src or {}), label="mse")
    progress, done = fit(stage, modules, opt, step, work, device, deadline, stop_at,
                         progress=_progress)
    vae.eval()
    return progress, done


def colour_head(vae, seed: int) -> torch.nn.Conv2d:
    """The 1x1 convolution that reads a patch's average colour from its latent pixel."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Conv2d(vae.config.latent_channels, 3, 1)


def colour_loss(head, mean: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """MSE between the head's reading of each latent pixel and its patch's average colour (the
    approximate decoder's own target, approx_decoder.downsample_targets)."""
    factor = images.shape[-1] // mean.shape[-1]
    return torch.nn.functional.mse_loss(head(mean),
                                        approx_decoder.downsample_targets(images, factor))


@torch.no_grad()
def centre_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Make every latent channel zero-mean over the training set without changing any decode:
    the channel means m are subtracted in the encoder's last 1x1 convolution (quant_conv, whose
    first half of outputs is the posterior mean) and added back in the decoder's first
    (post_quant_conv: W(z + m) + b = Wz + (Wm + b)). Returns the latents, centred.

    Why: SD 1.5's noise schedule leaves a little signal at its last timestep (sqrt(alpha) =
    0.068 at t = 999), so a UNet learns to read each image's channel means from the noise it is
    given and, sampling from pure noise, finds means near zero (Lin et al., "Common Diffusion
    Noise Schedules and Sample Steps are Flawed", 2024). With the colour term a latent channel's
    mean carries the image's overall colour (-0.62 in one channel, in units of the latents'
    spread: benchmarks/terminal_snr.py), and uncentred latents gave dim, washed-out images;
    centred, sampling from pure noise starts where the data's average is. SD 1.5's own latents are near zero-mean already."""
    m = latents.mean((0, 2, 3)).to(vae.quant_conv.bias)
    c = vae.config.latent_channels
    vae.quant_conv.bias[:c] -= m
    w = vae.post_quant_conv.weight[:, :, 0, 0]
    vae.post_quant_conv.bias += w @ m
    return latents - m.view(1, -1, 1, 1).cpu()


@torch.no_grad()
def encode(vae, images: np.ndarray, device: str, batch: int = 32,
           bf16: bool = False) -> torch.Tensor:
    """The posterior means of the images (unscaled), fp32 on the CPU. With `bf16`, computed
    under bf16 autocast: on two AMX cores about twice as fast, latents within ~0.4% of fp32's
    (relative RMS difference, 64 portraits, timed once by hand)."""
    out = []
    for i in range(0, len(images), batch):
        x = to_tensor(images[i:i + batch]).to(device)
        with _autocast(device) if bf16 else contextlib.nullcontext():
            out.append(vae.encode(x).latent_dist.mean.float().cpu())
    return torch.cat(out)


def noise_scheduler():
    """SD 1.5's training schedule as a diffusers scheduler (for `compute_snr`)."""
    from diffusers import DDPMScheduler

    keys = ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps")
    return DDPMScheduler(**{k: preview_model.SCHEDULER[k] for k in keys})


def snr_weights(snr: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ weights for an epsilon-prediction loss (Hang et al. 2023): min(SNR, γ) / SNR,
    with SNR = ᾱ / (1 − ᾱ) (diffusers' `compute_snr`). Noisy timesteps (SNR ≤ γ) keep weight 1;
    nearly clean ones, whose noise is easy to predict and which teach little about structure,
    weigh less."""
    return snr.clamp(max=gamma) / snr


def epsilon_loss(pred: torch.Tensor, noise: torch.Tensor, snr: torch.Tensor,
                 gamma: float = 0.0) -> torch.Tensor:
    """The UNet's loss: mean squared error of the predicted noise; with `gamma`, each item's
    error weighted by snr_weights at its timestep's SNR."""
    if not gamma:
        return torch.nn.functional.mse_loss(pred, noise)
    per_item = (pred - noise).pow(2).mean(tuple(range(1, pred.dim())))
    return (snr_weights(snr, gamma) * per_item).mean()


def train_unet(unet, text, tokens: torch.Tensor, empty: torch.Tensor, latents: torch.Tensor,
               caption_index: torch.Tensor, s: Settings, device: str, work: Path,
               deadline: float = math.inf, src: dict | None = None,
               stop_at: int | None = None):
    """Stage 2: epsilon prediction with caption dropout. Returns the loop's Progress (curve: the
    running loss) and whether the stage finished; the modules are left holding the averaged
    (EMA) weights."""
    from diffusers.training_utils import EMAModel, compute_snr

    scheduler = noise_scheduler()
    alphas = scheduler.alphas_cumprod.to(device)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=s.unet_lr, weight_decay=0.01)
    ema = EMAModel(params, decay=s.ema, foreach=True)  # decay min(ema, (1+k)/(10+k)) at step k
    n = len(latents)

    def step(k: int):
        g = _rng(s.seed, 2, k)
        idx = torch.randint(n, (s.unet_batch,), generator=g)
        drop = torch.rand(s.unet_batch, generator=g) < CAPTION_DROPOUT
        t = torch.randint(len(alphas), (s.unet_batch,), generator=g)
        noise = torch.randn((s.unet_batch, *latents.shape[1:]), generator=g)
        x0 = latents[idx].to(device)
        ids = torch.where(drop[:, None], empty[None], tokens[caption_index[idx]]).to(device)
        noise, t = noise.to(device), t.to(device)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with _autocast(device):
            context = text(ids)[0]
            pred = unet(xt, t, encoder_hidden_states=context).sample
        loss = epsilon_loss(pred.float(), noise, compute_snr(scheduler, t), s.min_snr_gamma)
        return loss, loss.item()

    stage = Stage("unet", s.unet_steps, s.unet_lr, s.warmup, s.checkpoint_every,
                  stage_settings(s, "unet", src or {}), smoothing=0.98)
    progress, done = fit(stage, [unet, text], opt, step, work, device, deadline, stop_at,
                         ema=ema, clip=1.0, progress=_progress)
    ema.copy_to(params)  # keep the averaged weights
    unet.eval()
    text.eval()
    return progress, done


def unet_steps_per_second(unet, text, tokens, empty, latents, caption_index, s: Settings,
                          device: str, steps: int = 30, warmup: int = 5) -> float:
    """UNet training steps per second on this device: `steps` timed after `warmup` untimed
    ones, on throwaway copies (the modules passed in are not changed)."""
    import copy
    import tempfile

    probe = dataclasses.replace(s, unet_steps=steps, checkpoint_every=10**9)
    with tempfile.TemporaryDirectory() as d:
        train_unet(copy.deepcopy(unet), copy.deepcopy(text), tokens, empty, latents,
                   caption_index, dataclasses.replace(probe, unet_steps=warmup), device,
                   Path(d, "warmup"))
        u, t = copy.deepcopy(unet), copy.deepcopy(text)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.time()
        train_unet(u, t, tokens, empty, latents, caption_index, probe, device, Path(d, "timed"))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return probe.unet_steps / (time.time() - start)


def latents_key(s: Settings, src: dict) -> dict:
    """What the cached training latents (latents.pt) depend on; a cache made with another
    value of any of these is ignored and made again."""
    keys = ("seed", "images", "size", "vae_images", "vae_steps", "vae_batch", "vae_crop",
            "vae_lr", "kl_weight", "colour_weight", "centre_latents", "encode_bf16", "warmup")
    return {**{k: getattr(s, k) for k in keys}, "renderer_version": portraits.VERSION,
            "source": src}


def training_latents(vae, s: Settings, src: dict, device: str, work: Path,
                     deadline: float, workers: int, stop_at: int | None = None):
    """Stage 1 and the training set's latents: train (or resume) the VAE, render and encode
    every portrait, centre and scale the latents. The result is cached in `work`/latents.pt
    with the VAE as it is then (centred, scaling factor set), so a resumed run (or `snapshot`)
    skips the rendering and encoding. Returns (scaled latents, the distinct captions, each
    latent's index into them, the VAE stage's {"curve", "seconds"}, seconds spent rendering and
    encoding); the latents are None if the VAE stage stopped first."""
    cache, key = work / "latents.pt", latents_key(s, src)
    if cache.exists() and (state := torch.load(cache, map_location="cpu"))["key"] == key:
        vae.load_state_dict(state["vae"])
        vae.register_to_config(scaling_factor=state["scaling_factor"])
        vae.requires_grad_(False).eval()
        return (state["latents"], state["captions"], state["caption_index"], state["vae_stage"],
                state["encode_seconds"])
    t0 = time.time()
    caps, images = render_images(src, 0, s.vae_images, s.seed, workers, s.size)
    render_s = time.time() - t0
    progress, done = train_vae(vae, images, s, device, work, deadline, src, stop_at)
    vae_stage = {"curve": progress.curve, "seconds": round(progress.seconds, 1)}
    if not done or stop_at == s.vae_steps:  # stopped, or told to stop once the stage is done
        return None, None, None, vae_stage, render_s
    vae.requires_grad_(False)

    t0 = time.time()
    latents, caption_index = [encode(vae, images, device, bf16=s.encode_bf16)], [caps]
    for start in range(s.vae_images, s.images, 1000):
        caps, imgs = render_images(src, start, min(start + 1000, s.images), s.seed,
                                   workers, s.size)
        latents.append(encode(vae, imgs, device, bf16=s.encode_bf16))
        caption_index.append(caps)
    latents = torch.cat(latents)
    if s.centre_latents:
        latents = centre_latents(vae, latents)
    scaling = 1 / latents.std().item()
    vae.register_to_config(scaling_factor=round(scaling, 5))
    latents = latents * vae.config.scaling_factor
    distinct = list(dict.fromkeys(src["fixed"] if src["captions"] == "fixed" else []))
    distinct += [c for c in dict.fromkeys(c for cs in caption_index for c in cs)
                 if c not in set(distinct)]
    order = {c: i for i, c in enumerate(distinct)}
    caption_index = torch.tensor([order[c] for cs in caption_index for c in cs])
    encode_s = round(time.time() - t0 + render_s, 1)
    _save_checkpoint(cache, {"key": key, "vae": vae.state_dict(), "vae_stage": vae_stage,
                             "scaling_factor": vae.config.scaling_factor, "latents": latents,
                             "captions": distinct, "caption_index": caption_index,
                             "encode_seconds": encode_s})
    return latents, distinct, caption_index, vae_stage, encode_s


def unet_config(s: Settings) -> dict:
    """The miniature UNet's config: MINI's, with `attention_heads` heads where it is set. Fewer
    heads cost less on a CPU (2 cores, batch 16: 1 head instead of 4 takes a step from 1.74 s to
    1.24 s, the attention's scores being 4x fewer); the saved config records the count."""
    config = dict(preview_model.MINI["unet"])
    if s.attention_heads:
        config["attention_head_dim"] = s.attention_heads  # diffusers' name for the head count
    return config


def _networks(s: Settings, device: str, vocab=()):
    """The miniature's three networks, freshly initialised (from the global seed), on `device`;
    the text encoder's embedding has a row per token of tokenizer_files(vocab)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    config = preview_model.MINI
    return (AutoencoderKL(**config["vae"]).to(device),
            UNet2DConditionModel(**unet_config(s)).to(device),
            CLIPTextModel(preview_model.text_config(config["text"], vocab)).to(device))


EXAMPLES = 12  # captions a record lists when they are generated (the count is recorded too)


def _record(s: Settings, device: str, src: dict, captions: list[str]) -> dict:
    """The start of a training record: what the run was and what it ran on."""
    listed = captions if src.get("captions") == "fixed" else captions[:EXAMPLES]
    return {"settings": asdict(s), "device": _device_name(device), "torch": torch.__version__,
            "renderer_version": portraits.VERSION, "source": src, "captions": listed,
            "distinct_captions": len(captions), "caption_dropout": CAPTION_DROPOUT,
            "autocast": "bf16"}


def _save_model(out: str | Path, unet, vae, text, name: str, record: dict, vocab=()) -> None:
    """Save the trained networks (fp16) with their training record and SHA256SUMS."""
    from . import model as modelmod

    preview_model.save(out, unet, vae.float(), text, name,
                       {"training.json": json_bytes(record)}, dtype=torch.float16, words=vocab)
    modelmod.write_sums(Path(out))


def tokenize(captions: list[str], vocab=()) -> torch.Tensor:
    """Token ids [N, 77] of the captions, with the tokenizer the saved model ships."""
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as d:
        tok = CLIPTokenizer.from_pretrained(preview_model.write_tokenizer(Path(d), vocab),
                                            model_max_length=77)
        return tok(captions, padding="max_length", truncation=True, max_length=77,
                   return_tensors="pt").input_ids


def run(out: str | Path, prompts: dict[str, str], settings: Settings | None = None,
        device: str = "auto", work: str | Path = "build/train", time_limit: float | None = None,
        workers: int | None = None, fit_seconds: float | None = None,
        stop: tuple[str, int] | None = None) -> dict:
    """Train (or resume) the miniature and save it to `out`. Returns the training record; its
    "finished" is False if `time_limit` seconds ran out first, or at `stop` = (stage, step)
    (run again to resume). `settings` is not changed."""
    from . import model as modelmod

    s = settings or Settings()
    modelmod.quiet()
    device = modelmod.pick_device(device)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    deadline = started + (time_limit or float("inf"))
    fit_until = started + fit_seconds if fit_seconds else None
    workers = workers if workers is not None else min(16, os.cpu_count() or 1)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(s.seed)
    vocab, src = words(s, prompts), source(s, prompts)
    vae, unet, text = _networks(s, device, vocab)
    # wall_seconds counts this invocation only; total_seconds the whole run's
    resumed = sorted(p.name for p in (work / "latents.pt", work / "vae", work / "unet")
                     if p.name == "latents.pt" and p.exists()
                     or checkpoint_folder(work, p.name) is not None)
    stop_vae = stop[1] if stop and stop[0] == "vae" else None
    latents, captions_all, caption_index, vae_stage, encode_s = training_latents(
        vae, s, src, device, work, deadline, workers, stop_vae)
    record = {**_record(s, device, src, captions_all or []), "resumed_from": resumed,
              "vae_curve": vae_stage["curve"]}
    if latents is None:
        return {**record, "finished": False, "stage": "vae"}

    tokens = tokenize(captions_all, vocab)
    empty = tokenize([""], vocab)[0]
    if fit_until is not None:  # choose the step count that ends by then (recorded; reproducible)
        rate = unet_steps_per_second(unet, text, tokens, empty, latents, caption_index, s,
                                    device)
        s = dataclasses.replace(
            s, unet_steps=max(100, int((fit_until - time.time()) * rate * 0.9) // 100 * 100))
        record["settings"] = asdict(s)
        print(f"{rate:.1f} UNet steps/s: training {s.unet_steps} steps", flush=True)
    stop_unet = stop[1] if stop and stop[0] == "unet" else None
    progress, done = train_unet(unet, text, tokens, empty, latents, caption_index, s, device,
                                work, deadline, src, stop_unet)
    curve = progress.curve
    record.update({"unet_curve": curve, "unet_steps_done": progress.step,
                   "scaling_factor": vae.config.scaling_factor,
                   "final_loss": curve[-1][1] if curve else None,
                   "vae_final_mse": vae_stage["curve"][-1][1] if vae_stage["curve"] else None,
                   "render_and_encode_seconds": encode_s})
    if not done:
        return {**record, "finished": False, "stage": "unet"}
    record.update({"finished": True, "wall_seconds": round(time.time() - started, 1),
                   "stage_seconds": {"vae": vae_stage["seconds"], "render_and_encode": encode_s,
                                     "unet": round(progress.seconds, 1)}})
    record["total_seconds"] = round(sum(record["stage_seconds"].values()), 1)
    _save_model(out, unet, vae, text, "preview-sd15-miniature", record, vocab)
    return record


def snapshot(out: str | Path, work: str | Path) -> Path:
    """Save the model an unfinished (or running) training would give if it stopped now: the VAE
    from `work`/latents.pt and the UNet and text encoder's averaged (EMA) weights from its last
    UNet checkpoint, named "preview-sd15-miniature-step<N>", so that it can be built and
    measured mid-run (`doit model=<out>`, benchmarks/terminal_snr.py --model <out>). The run's
    settings and captions come from the checkpoint."""
    from diffusers.training_utils import EMAModel

    from .training_loop import SETTINGS_FILE, Progress, accelerator_for

    work = Path(work)
    folder = checkpoint_folder(work, "unet")
    missing = [n for n, ok in (("latents.pt", (work / "latents.pt").exists()),
                               ("UNet checkpoint", folder is not None)) if not ok]
    if missing:
        raise SystemExit(f"{work}: no {' or '.join(missing)} yet; a snapshot needs the latents "
                         "and a UNet checkpoint (train until the UNet stage has checkpointed)")
    cache = torch.load(work / "latents.pt", map_location="cpu")
    saved = json.loads((folder / SETTINGS_FILE).read_text())
    fields = {f.name for f in dataclasses.fields(Settings)}
    s = Settings(**{k: v for k, v in saved.items() if k in fields})
    src = saved["source"]
    prompts = src.get("prompts") or {}
    vocab = captionsmod.vocabulary(prompts) if s.tokenizer == "words" else []
    vae, unet, text = _networks(s, "cpu", vocab)
    vae.load_state_dict(cache["vae"])
    vae.register_to_config(scaling_factor=cache["scaling_factor"])
    params = list(unet.parameters()) + list(text.parameters())
    accelerator, state = accelerator_for("cpu"), Progress()
    ema = EMAModel(params, decay=s.ema, foreach=True)
    opt = torch.optim.AdamW(params)
    unet, text, opt = accelerator.prepare(unet, text, opt)
    accelerator.register_for_checkpointing(state)
    accelerator.register_for_checkpointing(ema)
    accelerator.load_state(str(folder))
    ema.copy_to(params)
    vae_stage = cache["vae_stage"]
    record = {**_record(s, "cpu", src, cache["captions"]),
              "snapshot_of": str(work), "finished": False, "resumed_from": [],
              "vae_curve": vae_stage["curve"], "unet_curve": state.curve,
              "unet_steps_done": state.step, "scaling_factor": cache["scaling_factor"],
              "final_loss": state.curve[-1][1] if state.curve else None,
              "vae_final_mse": vae_stage["curve"][-1][1] if vae_stage["curve"] else None,
              "total_seconds": round(vae_stage["seconds"] + cache["encode_seconds"]
                                     + state.seconds, 1)}
    _save_model(out, unet, vae, text, f"preview-sd15-miniature-step{state.step}", record, vocab)
    return Path(out)


def run_task(spec_path: str, out: str, device: str, work: str) -> None:
    """The `train` task: train again with the settings recorded beside the shipped weights (so
    the same code and settings reproduce them), resuming from checkpoints in `work`."""
    import tomllib

    with open(spec_path, "rb") as fh:
        prompts = tomllib.load(fh)["prompts"]
    recorded = Path(out) / "training.json"
    settings = Settings()
    if recorded.exists():
        settings = Settings(**json.loads(recorded.read_text())["settings"])
    record = run(out, prompts, settings, device, work)
    print(f"trained {record['unet_steps_done']} UNet steps on {record['device']} in "
          f"{record.get('wall_seconds')} s; final loss {record['final_loss']}")


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def main() -> None:
    import argparse
    import tomllib

    ap = argparse.ArgumentParser(description="Train the preview miniature (resumable).")
    ap.add_argument("--out", default="models/preview")
    ap.add_argument("--spec", default="figures.toml")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--work", default="build/train")
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--fit-seconds", type=float, default=None,
                    help="choose --unet-steps so that training ends this long after the start")
    ap.add_argument("--snapshot", action="store_true",
                    help="do not train: save the model the checkpoints in --work give now to "
                         "--out (settings from the checkpoint)")
    for f, v in asdict(Settings()).items():
        if isinstance(v, bool):
            ap.add_argument(f"--{f.replace('_', '-')}", action=argparse.BooleanOptionalAction,
                            default=v)
        else:
            ap.add_argument(f"--{f.replace('_', '-')}", type=type(v), default=v)
    args = ap.parse_args()
    settings = Settings(**{f: getattr(args, f) for f in asdict(Settings())})
    with open(args.spec, "rb") as fh:
        prompts = tomllib.load(fh)["prompts"]
    if args.snapshot:
        print(f"saved {snapshot(args.out, args.work)}")
        return
    try:
        record = run(args.out, prompts, settings, args.device, args.work, args.time_limit,
                     fit_seconds=args.fit_seconds)
    except CheckpointError as err:
        raise SystemExit(f"error: {err}") from None
    print(json.dumps({k: v for k, v in record.items() if not k.endswith("curve")
                      and k != "captions"}, indent=1))


if __name__ == "__main__":
    main()
