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

Every random draw (data, crops, timesteps, noise) is seeded by (seed, step), so a run stopped at
a checkpoint and resumed gives the run that was never stopped. `run` writes the model in
diffusers layout (fp16 weights) with `training.json`: the provenance and the loss curves.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from . import approx_decoder, portraits, preview_model  # noqa: E402
from .files import atomic_write, json_bytes  # noqa: E402

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
    unet_steps: int = 2700      # (1800)
    unet_batch: int = 16        # (64)
    unet_lr: float = 1e-3
    min_snr_gamma: float = 5.0  # min-SNR loss weighting, min(SNR, γ)/SNR (0: plain MSE; 0)
    encode_bf16: bool = True    # encode the training set under bf16 autocast (False)
    attention_heads: int = 1    # heads in every UNet attention layer (0: MINI's 4; 0)
    warmup: int = 200
    ema: float = 0.999
    checkpoint_every: int = 500


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


def render_images(captions: list[str], start: int, stop: int, seed: int, workers: int = 0,
                  size: int = portraits.SIZE) -> tuple[list[str], np.ndarray]:
    """Items start..stop of the training set: captions and uint8 [N, size, size, 3] images."""
    args = [(captions, i, seed, size) for i in range(start, stop)]
    if workers > 1:
        from multiprocessing import get_context

        with get_context("fork").Pool(workers) as pool:
            items = pool.starmap(portraits.dataset_item, args, chunksize=16)
    else:
        items = [portraits.dataset_item(*a) for a in args]
    return [c for c, _ in items], np.stack([im for _, im in items])


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def lr_at(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(total - warmup, 1)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def _autocast(device: str):
    """bf16 autocast on every device: on a CPU with AMX (these machines' Xeons) a UNet step at
    batch 16 took about 1.2 s instead of 2.0 s in fp32 (timed once by hand, not a benchmark);
    the GPU runs used it from the start."""
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)


@dataclass
class Elapsed:
    """Wall seconds a run has cost over all its invocations: each checkpoint records the total so
    far, and a resumed invocation continues from the largest it loads. Time an interrupted
    invocation spent after its last checkpoint is redone and not counted; a checkpoint written
    before checkpoints carried a time makes the total unknown (None)."""
    start: float = field(default_factory=time.time)
    earlier: float | None = 0.0

    def resumed(self, state: dict) -> None:
        prior = state.get("seconds")
        self.earlier = None if prior is None or self.earlier is None else max(self.earlier, prior)

    def total(self) -> float | None:
        return None if self.earlier is None else self.earlier + time.time() - self.start


def _save_checkpoint(path: Path, state: dict) -> None:
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


def train_vae(vae, images: np.ndarray, s: Settings, device: str, work: Path,
              deadline: float, elapsed: Elapsed | None = None) -> tuple[list, bool]:
    """Stage 1. Returns the loss curve and whether the stage finished."""
    ckpt = work / "vae.pt"
    head = colour_head(vae, s.seed).to(device)
    params = list(vae.parameters()) + (list(head.parameters()) if s.colour_weight else [])
    opt = torch.optim.AdamW(params, lr=s.vae_lr, weight_decay=0.0)
    step, curve = 0, []
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device)
        vae.load_state_dict(state["vae"])
        if "head" in state:  # checkpoints from before the colour term have none
            head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        step, curve = state["step"], state["curve"]
        if elapsed:
            elapsed.resumed(state)
    vae.train()
    bar = _progress(s.vae_steps, step, "vae")
    n, side = len(images), images.shape[1]
    while step < s.vae_steps:
        g = _rng(s.seed, 1, step)
        idx = torch.randint(n, (s.vae_batch,), generator=g).numpy()
        ys = torch.randint(side - s.vae_crop + 1, (s.vae_batch,), generator=g).tolist()
        xs = torch.randint(side - s.vae_crop + 1, (s.vae_batch,), generator=g).tolist()
        crops = np.stack([images[i, y:y + s.vae_crop, x:x + s.vae_crop]
                          for i, y, x in zip(idx, ys, xs)])
        x = to_tensor(crops).to(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s.vae_lr, s.warmup, s.vae_steps)
        with _autocast(device):
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(
                posterior.mean.shape, generator=g).to(device)
            rec = vae.decode(z).sample
        mse = torch.nn.functional.mse_loss(rec.float(), x)
        loss = mse + s.kl_weight * posterior.kl().mean()
        if s.colour_weight:
            loss = loss + s.colour_weight * colour_loss(head, posterior.mean.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % max(1, min(25, s.vae_steps // 20)) == 0 or step == s.vae_steps:
            curve.append([step, round(mse.item(), 6)])
            bar.set_postfix(mse=f"{mse.item():.5f}")
        bar.update(1)
        if step % s.checkpoint_every == 0 or step == s.vae_steps or time.time() > deadline:
            _save_checkpoint(ckpt, {"vae": vae.state_dict(), "head": head.state_dict(),
                                    "opt": opt.state_dict(), "step": step, "curve": curve,
                                    "seconds": elapsed.total() if elapsed else None})
            if time.time() > deadline and step < s.vae_steps:
                bar.close()
                return curve, False
    bar.close()
    vae.eval()
    return curve, True


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


def snr_weights(alphas_cumprod: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ weights for an epsilon-prediction loss (Hang et al. 2023): min(SNR, γ) / SNR,
    with SNR = ᾱ / (1 − ᾱ). Noisy timesteps (SNR ≤ γ) keep weight 1; nearly clean ones, whose
    noise is easy to predict and which teach little about structure, weigh less."""
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return snr.clamp(max=gamma) / snr


def epsilon_loss(pred: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor,
                 gamma: float = 0.0) -> torch.Tensor:
    """The UNet's loss: mean squared error of the predicted noise; with `gamma`, each item's
    error weighted by snr_weights at its timestep."""
    if not gamma:
        return torch.nn.functional.mse_loss(pred, noise)
    per_item = (pred - noise).pow(2).mean(tuple(range(1, pred.dim())))
    return (snr_weights(alphas_cumprod, gamma) * per_item).mean()


def train_unet(unet, text, tokens: torch.Tensor, empty: torch.Tensor, latents: torch.Tensor,
               caption_index: torch.Tensor, s: Settings, device: str, work: Path,
               deadline: float, elapsed: Elapsed | None = None) -> tuple[list, bool, int]:
    """Stage 2: epsilon prediction with caption dropout; returns (loss curve, finished, step)."""
    from . import schedule

    alphas = schedule.training_alphas_cumprod(preview_model.SCHEDULER).to(device)
    ckpt = work / "unet.pt"
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=s.unet_lr, weight_decay=0.01)
    ema = [p.detach().clone() for p in params]
    step, curve = 0, []
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device)
        unet.load_state_dict(state["unet"])
        text.load_state_dict(state["text"])
        opt.load_state_dict(state["opt"])
        ema = [e.to(device) for e in state["ema"]]
        step, curve = state["step"], state["curve"]
        if elapsed:
            elapsed.resumed(state)
    unet.train()
    text.train()
    bar = _progress(s.unet_steps, step, "unet")
    n = len(latents)
    running = None
    while step < s.unet_steps:
        g = _rng(s.seed, 2, step)
        idx = torch.randint(n, (s.unet_batch,), generator=g)
        drop = torch.rand(s.unet_batch, generator=g) < CAPTION_DROPOUT
        t = torch.randint(len(alphas), (s.unet_batch,), generator=g)
        noise = torch.randn((s.unet_batch, *latents.shape[1:]), generator=g)
        x0 = latents[idx].to(device)
        ids = torch.where(drop[:, None], empty[None], tokens[caption_index[idx]]).to(device)
        noise, t = noise.to(device), t.to(device)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s.unet_lr, s.warmup, s.unet_steps)
        with _autocast(device):
            context = text(ids)[0]
            pred = unet(xt, t, encoder_hidden_states=context).sample
        loss = epsilon_loss(pred.float(), noise, alphas[t], s.min_snr_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(s.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - decay)
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % max(1, min(25, s.unet_steps // 20)) == 0 or step == s.unet_steps:
            curve.append([step, round(running, 6)])
            bar.set_postfix(loss=f"{running:.4f}")
        bar.update(1)
        if step % s.checkpoint_every == 0 or step == s.unet_steps or time.time() > deadline:
            _save_checkpoint(ckpt, {"unet": unet.state_dict(), "text": text.state_dict(),
                                    "opt": opt.state_dict(), "ema": ema, "step": step,
                                    "curve": curve, "settings": asdict(s),
                                    "seconds": elapsed.total() if elapsed else None})
            if time.time() > deadline and step < s.unet_steps:
                break
    bar.close()
    with torch.no_grad():  # keep the averaged weights
        for p, e in zip(params, ema):
            p.copy_(e)
    unet.eval()
    text.eval()
    return curve, step >= s.unet_steps, step


def unet_steps_per_second(unet, text, tokens, empty, latents, caption_index, s: Settings,
                          device: str, steps: int = 30, warmup: int = 5) -> float:
    """UNet training steps per second on this device: `steps` timed after `warmup` untimed
    ones, on throwaway copies (the modules passed in are not changed)."""
    import copy
    import tempfile

    probe = Settings(**{**asdict(s), "unet_steps": steps, "checkpoint_every": 10**9})
    with tempfile.TemporaryDirectory() as d:
        u, t = copy.deepcopy(unet), copy.deepcopy(text)
        train_unet(u, t, tokens, empty, latents, caption_index,
                   Settings(**{**asdict(probe), "unet_steps": warmup}), device, Path(d),
                   float("inf"))
        Path(d, "unet.pt").unlink()
        u, t = copy.deepcopy(unet), copy.deepcopy(text)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.time()
        train_unet(u, t, tokens, empty, latents, caption_index, probe, device, Path(d),
                   float("inf"))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return probe.unet_steps / (time.time() - start)


def latents_key(s: Settings, captions: list[str]) -> dict:
    """What the cached training latents (latents.pt) depend on; a cache made with another
    value of any of these is ignored and made again."""
    keys = ("seed", "images", "size", "vae_images", "vae_steps", "vae_batch", "vae_crop",
            "vae_lr", "kl_weight", "colour_weight", "centre_latents", "encode_bf16", "warmup")
    return {**{k: getattr(s, k) for k in keys}, "renderer_version": portraits.VERSION,
            "captions": list(captions)}


def training_latents(vae, s: Settings, captions: list[str], device: str, work: Path,
                     deadline: float, elapsed: Elapsed, workers: int):
    """Stage 1 and the training set's latents: train (or resume) the VAE, render and encode
    every portrait, centre and scale the latents. The result is cached in `work`/latents.pt
    with the VAE as it is then (centred, scaling factor set), so a resumed run (or `snapshot`)
    skips the rendering and encoding. Returns (scaled latents, caption index per latent, VAE
    loss curve, seconds spent rendering and encoding); the latents and index are None if the
    VAE stage ran out of time."""
    cache, key = work / "latents.pt", latents_key(s, captions)
    if cache.exists() and (state := torch.load(cache, map_location="cpu"))["key"] == key:
        vae.load_state_dict(state["vae"])
        vae.register_to_config(scaling_factor=state["scaling_factor"])
        vae.requires_grad_(False).eval()
        elapsed.resumed(state)
        return state["latents"], state["caption_index"], state["vae_curve"], 0.0
    t0 = time.time()
    caps, images = render_images(captions, 0, s.vae_images, s.seed, workers, s.size)
    render_s = time.time() - t0
    vae_curve, done = train_vae(vae, images, s, device, work, deadline, elapsed)
    if not done:
        return None, None, vae_curve, render_s
    vae.requires_grad_(False)

    t0 = time.time()
    latents, caption_index = [encode(vae, images, device, bf16=s.encode_bf16)], [caps]
    for start in range(s.vae_images, s.images, 1000):
        caps, imgs = render_images(captions, start, min(start + 1000, s.images), s.seed,
                                   workers, s.size)
        latents.append(encode(vae, imgs, device, bf16=s.encode_bf16))
        caption_index.append(caps)
    latents = torch.cat(latents)
    if s.centre_latents:
        latents = centre_latents(vae, latents)
    scaling = 1 / latents.std().item()
    vae.register_to_config(scaling_factor=round(scaling, 5))
    latents = latents * vae.config.scaling_factor
    order = {c: i for i, c in enumerate(captions)}
    caption_index = torch.tensor([order[c] for cs in caption_index for c in cs])
    encode_s = time.time() - t0 + render_s
    _save_checkpoint(cache, {"key": key, "vae": vae.state_dict(), "vae_curve": vae_curve,
                             "scaling_factor": vae.config.scaling_factor, "latents": latents,
                             "caption_index": caption_index, "seconds": elapsed.total()})
    return latents, caption_index, vae_curve, encode_s


def unet_config(s: Settings) -> dict:
    """The miniature UNet's config: MINI's, with `attention_heads` heads where it is set. Fewer
    heads cost less on a CPU (2 cores, batch 16: 1 head instead of 4 takes a step from 1.74 s to
    1.24 s, the attention's scores being 4x fewer); the saved config records the count."""
    config = dict(preview_model.MINI["unet"])
    if s.attention_heads:
        config["attention_head_dim"] = s.attention_heads  # diffusers' name for the head count
    return config


def _networks(s: Settings, device: str):
    """The miniature's three networks, freshly initialised (from the global seed), on `device`."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    config = preview_model.MINI
    return (AutoencoderKL(**config["vae"]).to(device),
            UNet2DConditionModel(**unet_config(s)).to(device),
            CLIPTextModel(preview_model.text_config(config["text"])).to(device))


def _record(s: Settings, device: str, captions: list[str]) -> dict:
    """The start of a training record: what the run was and what it ran on."""
    return {"settings": asdict(s), "device": _device_name(device), "torch": torch.__version__,
            "renderer_version": portraits.VERSION, "captions": captions,
            "caption_dropout": CAPTION_DROPOUT, "autocast": "bf16"}


def _save_model(out: str | Path, unet, vae, text, name: str, record: dict) -> None:
    """Save the trained networks (fp16) with their training record and SHA256SUMS."""
    from . import model as modelmod

    preview_model.save(out, unet, vae.float(), text, name,
                       {"training.json": json_bytes(record)}, dtype=torch.float16)
    modelmod.write_sums(Path(out))


def tokenize(captions: list[str]) -> torch.Tensor:
    """Token ids [N, 77] of the captions, with the tokenizer the saved model ships."""
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as d:
        tok = CLIPTokenizer.from_pretrained(preview_model.write_tokenizer(Path(d)),
                                            model_max_length=77)
        return tok(captions, padding="max_length", truncation=True, max_length=77,
                   return_tensors="pt").input_ids


def run(out: str | Path, prompts: dict[str, str], settings: Settings | None = None,
        device: str = "auto", work: str | Path = "build/train", time_limit: float | None = None,
        workers: int | None = None, fit_seconds: float | None = None) -> dict:
    """Train (or resume) the miniature and save it to `out`. Returns the training record; its
    "finished" is False if `time_limit` seconds ran out first (run again to resume)."""
    from . import model as modelmod

    s = settings or Settings()
    modelmod.quiet()
    device = modelmod.pick_device(device)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    elapsed = Elapsed(started)
    deadline = started + (time_limit or float("inf"))
    fit_until = started + fit_seconds if fit_seconds else None
    workers = workers if workers is not None else min(16, os.cpu_count() or 1)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(s.seed)
    vae, unet, text = _networks(s, device)
    captions_all = portraits.training_captions(prompts)
    # wall_seconds counts this invocation only: say so when it resumed an earlier one
    resumed = sorted(p.name for p in (work / "latents.pt", work / "vae.pt", work / "unet.pt")
                     if p.exists())
    record = {**_record(s, device, captions_all), "resumed_from": resumed}
    latents, caption_index, vae_curve, encode_s = training_latents(
        vae, s, captions_all, device, work, deadline, elapsed, workers)
    record["vae_curve"] = vae_curve
    if latents is None:
        return {**record, "finished": False, "stage": "vae"}

    tokens = tokenize(captions_all)
    empty = tokenize([""])[0]
    if fit_until is not None:  # choose the step count that ends by then (recorded; reproducible)
        rate = unet_steps_per_second(unet, text, tokens, empty, latents, caption_index, s,
                                    device)
        s.unet_steps = max(100, int((fit_until - time.time()) * rate * 0.9) // 100 * 100)
        record["settings"] = asdict(s)
        print(f"{rate:.1f} UNet steps/s: training {s.unet_steps} steps", flush=True)
    unet_curve, done, step = train_unet(unet, text, tokens, empty, latents, caption_index, s,
                                        device, work, deadline, elapsed)
    record.update({"unet_curve": unet_curve, "unet_steps_done": step,
                   "scaling_factor": vae.config.scaling_factor,
                   "final_loss": unet_curve[-1][1] if unet_curve else None,
                   "vae_final_mse": vae_curve[-1][1] if vae_curve else None,
                   "render_and_encode_seconds": round(encode_s, 1)})  # 0: from latents.pt
    if not done:
        return {**record, "finished": False, "stage": "unet"}
    total = elapsed.total()
    record.update({"finished": True, "wall_seconds": round(time.time() - started, 1),
                   "total_seconds": None if total is None else round(total, 1)})
    _save_model(out, unet, vae, text, "preview-sd15-miniature", record)
    return record


def snapshot(out: str | Path, work: str | Path, settings: Settings | None = None,
             prompts: dict[str, str] | None = None) -> Path:
    """Save the model an unfinished (or running) training would give if it stopped now: the VAE
    from `work`/latents.pt and the UNet and text encoder's averaged (EMA) weights from its last
    UNet checkpoint, named "preview-sd15-miniature-step<N>", so that it can be built and
    measured mid-run (`doit model=<out>`, benchmarks/terminal_snr.py --model <out>). The run's
    settings come from the checkpoint; `settings` stands in for checkpoints older than that."""
    work = Path(work)
    missing = [p.name for p in (work / "latents.pt", work / "unet.pt") if not p.exists()]
    if missing:
        raise SystemExit(f"{work}: no {' or '.join(missing)} yet; a snapshot needs the latents "
                         "and a UNet checkpoint (train until the UNet stage has checkpointed)")
    cache = torch.load(work / "latents.pt", map_location="cpu")
    state = torch.load(work / "unet.pt", map_location="cpu")
    s = Settings(**state["settings"]) if "settings" in state else settings or Settings()
    vae, unet, text = _networks(s, "cpu")
    vae.load_state_dict(cache["vae"])
    vae.register_to_config(scaling_factor=cache["scaling_factor"])
    unet.load_state_dict(state["unet"])
    text.load_state_dict(state["text"])
    with torch.no_grad():
        for p, e in zip(list(unet.parameters()) + list(text.parameters()), state["ema"]):
            p.copy_(e)
    curve, seconds = state["curve"], state.get("seconds") or 0.0
    captions = portraits.training_captions(prompts) if prompts else []
    record = {**_record(s, "cpu", captions),
              "snapshot_of": str(work), "finished": False, "resumed_from": [],
              "vae_curve": cache["vae_curve"], "unet_curve": curve,
              "unet_steps_done": state["step"], "scaling_factor": cache["scaling_factor"],
              "final_loss": curve[-1][1] if curve else None,
              "vae_final_mse": cache["vae_curve"][-1][1] if cache["vae_curve"] else None,
              "wall_seconds": round(seconds, 1), "total_seconds": state.get("seconds")}
    _save_model(out, unet, vae, text, f"preview-sd15-miniature-step{state['step']}", record)
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
        print(f"saved {snapshot(args.out, args.work, settings, prompts)}")
        return
    record = run(args.out, prompts, settings, args.device, args.work, args.time_limit,
                 fit_seconds=args.fit_seconds)
    print(json.dumps({k: v for k, v in record.items() if not k.endswith("curve")
                      and k != "captions"}, indent=1))


if __name__ == "__main__":
    main()
