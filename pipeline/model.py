"""Model loading: resolve the `model=` argument, fingerprint it, and load its components.

`model=preview` (the default) is the embedded preview model: the miniature of SD 1.5 that
pipeline/train.py trains, shipped in models/preview/ with the sha256 of every file recorded in
models/preview/SHA256SUMS (checked before anything is built). Anything else is a hub id (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5)
or a local directory in diffusers layout. Both go through the same `from_pretrained` calls.

Resolution and fingerprinting are pure Python (dodo.py calls them at load time); torch and
diffusers are imported only by `load`.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .files import read_json, sha256_file, write_json

PREVIEW = "preview"
PREVIEW_DIR = Path("models/preview")
PREVIEW_SUMS = "SHA256SUMS"
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
HUB_PATTERNS = ["model_index.json", "scheduler/*.json", "tokenizer/*", "text_encoder/config.json",
                "text_encoder/model.safetensors", "unet/config.json",
                "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors"]


class ModelError(ValueError):
    """The model argument does not name a usable model; the message says how to fix it."""


@dataclass(frozen=True)
class ModelRef:
    arg: str
    kind: str  # "preview" | "dir" | "hub"

    @property
    def preview(self) -> bool:
        return self.kind == PREVIEW


HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def looks_like_path(arg: str) -> bool:
    """A hub id is exactly `owner/name`; anything else is taken as a directory."""
    return not HUB_ID.match(arg)


def resolve(arg: str) -> ModelRef:
    """Classify the model argument and check what can be checked without loading anything."""
    arg = (arg or PREVIEW).strip()
    if arg == PREVIEW:
        return ModelRef(arg, PREVIEW)
    expanded = os.path.expanduser(arg)
    if os.path.isdir(expanded):
        missing = [c for c in COMPONENTS if not os.path.isdir(os.path.join(expanded, c))]
        if missing:
            raise ModelError(f"model directory {arg} has no {missing[0]}/ folder; it must be in "
                             f"diffusers layout (unet/, vae/, text_encoder/, tokenizer/, "
                             f"scheduler/), e.g. a StableDiffusionPipeline.save_pretrained output")
        check_prediction_type(Path(expanded))
        return ModelRef(str(Path(expanded).resolve()), "dir")
    if looks_like_path(arg):
        raise ModelError(f"model directory {arg} does not exist; pass model=<a diffusers-layout "
                         f"directory>, model=<hub id> such as "
                         f"stable-diffusion-v1-5/stable-diffusion-v1-5, or model=preview")
    return ModelRef(arg, "hub")


def write_sums(directory: Path) -> None:
    """Record the sha256 of every file of a model directory in its SHA256SUMS."""
    from .files import atomic_write

    lines = [f"{sha256_file(p)}  {p.relative_to(directory).as_posix()}"
             for p in _weight_files(directory) if p.name != PREVIEW_SUMS]
    atomic_write(directory / PREVIEW_SUMS, ("\n".join(lines) + "\n").encode())


def read_sums(directory: Path) -> dict[str, str]:
    """A model directory's SHA256SUMS as {file relative to the directory: sha256}."""
    return {rel: digest for digest, rel in
            (line.split(None, 1) for line in (directory / PREVIEW_SUMS).read_text().splitlines())}


def check_shipped(directory: Path = PREVIEW_DIR) -> None:
    """The shipped preview model is whole: every file SHA256SUMS names exists and matches."""
    fix = "run `doit train` to train it again (see README), or restore it with git checkout"
    sums = directory / PREVIEW_SUMS
    if not sums.exists():
        raise ModelError(f"the preview model's {sums} is missing; {fix}")
    for rel, digest in read_sums(directory).items():
        path = directory / rel
        if not path.is_file():
            raise ModelError(f"the preview model's file {path} is missing; {fix}")
        if sha256_file(path) != digest:
            raise ModelError(f"the preview model's file {path} is corrupt (its sha256 does not "
                             f"match {sums}); {fix}")


SUPPORTED_PREDICTION = ("epsilon",)


def check_prediction_type(directory: Path) -> None:
    """The sampler treats the UNet's output as predicted noise (SD 1.5's epsilon prediction);
    a v-prediction model (SD 2.x at 768, for instance) would be sampled wrong without a word."""
    config = directory / "scheduler" / "scheduler_config.json"
    kind = read_json(config).get("prediction_type", "epsilon") if config.exists() else "epsilon"
    if kind not in SUPPORTED_PREDICTION:
        raise ModelError(f"model {directory} predicts {kind!r} ({config}); this pipeline samples "
                         f"epsilon-prediction models such as SD 1.5 only: use one of those")


def local_dir(ref: ModelRef) -> Path:
    """The directory holding the model's files; fetches a hub model (needs network) once."""
    if ref.kind == PREVIEW:
        return PREVIEW_DIR
    if ref.kind == "dir":
        return Path(ref.arg)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref.arg, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # network, auth, unknown repo: one clear line
        raise ModelError(f"could not fetch hub model {ref.arg!r} ({type(exc).__name__}: {exc}); "
                         f"check the id and your network, or download it and pass its "
                         f"directory as model=<dir>") from None


def _weight_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))


def stat_signature(directory: Path) -> list:
    return [[str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns]
            for p in _weight_files(directory)]


def fingerprint(ref: ModelRef, directory: Path, previous: dict | None = None) -> dict:
    """Identity of the model: a sha256 over every file's path and sha256 (reused from `previous`
    for files whose size and mtime have not changed, so a 4 GB model is hashed once)."""
    old = {f[0]: f for f in (previous or {}).get("files", [])}
    files = []
    for rel, size, mtime in stat_signature(directory):
        prior = old.get(rel)
        digest = prior[3] if prior and prior[1:3] == [size, mtime] else sha256_file(directory / rel)
        files.append([rel, size, mtime, digest])
    total = hashlib.sha256(json.dumps([[f[0], f[3]] for f in files]).encode()).hexdigest()
    index = read_json(directory / "model_index.json") if (directory / "model_index.json").exists() \
        else {}
    name = {"preview": index.get("_name_or_path", PREVIEW), "dir": Path(ref.arg).name,
            "hub": ref.arg}[ref.kind]
    return {"arg": ref.arg, "kind": ref.kind, "name": name, "dir": str(directory),
            "sha256": total, "id": f"{name}@{total[:12]}", "preview": ref.preview, "files": files}


def prepare(arg: str, out: str | Path) -> dict:
    """The `model` task (and anything else that needs a model record): check the shipped preview
    model, fingerprint any model, record fingerprint and geometry to `out`."""
    ref = resolve(arg)
    directory = local_dir(ref)
    if ref.preview:
        check_shipped(directory)
    if ref.kind == "hub":  # a directory was checked by resolve; a hub model is on disk only now
        check_prediction_type(directory)
    previous = read_json(out) if Path(out).exists() else None
    if previous and previous.get("arg") != ref.arg:
        previous = None
    info = fingerprint(ref, directory, previous)
    from . import geometry
    info["geometry"] = geometry.load(directory)
    write_json(out, info)
    return info


def is_current(out: str | Path) -> bool:
    """doit uptodate check: the recorded fingerprint still matches the files on disk."""
    try:
        info = read_json(out)
        directory = Path(info["dir"])
        return [f[:3] for f in info["files"]] == stat_signature(directory)
    except (OSError, ValueError, KeyError):
        return False


@dataclass
class Components:
    tokenizer: object
    text_encoder: object
    unet: object
    vae: object
    scheduler_config: dict
    device: str
    dtype: object
    info: dict
    memory_format: object = None
    speedups: tuple = ()   # names from pipeline/speedups.py applied to the UNet

    @property
    def autocast(self) -> str | None:
        """The dtype the UNet computes in under autocast, if a speed-up runs it so."""
        return "bfloat16" if "bf16_autocast" in self.speedups else None


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("device=cuda was asked for but torch sees no CUDA device; install a "
                         "CUDA build of torch (see README) or use device=cpu")
    return device


def quiet() -> None:
    """Silence what the user did not ask for: the libraries' loading and saving progress bars
    and their info-level chatter (e.g. CLIP's note that a long prompt was cut at 77 tokens,
    which SD 1.5 does by design). Errors still show."""
    import diffusers
    import transformers

    for lib in (transformers.utils.logging, diffusers.utils.logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()


def load(model_json: str, device: str = "auto", speedups: str | None = None) -> Components:
    """Load every component from the directory recorded by `prepare` (fp16 on CUDA), with the
    UNet speed-ups `speedups` names (pipeline/speedups.py: None or "default" is the measured
    default for the device, "none" the modules as loaded). Loaded once per process for each
    (model, device, speed-ups)."""
    from . import speedups as speedupsmod

    device = pick_device(device)
    try:
        names = speedupsmod.parse(speedups, device)
    except ValueError as err:
        raise ModelError(f"speedups={speedups}: {err}") from None
    return _load(model_json, device, names)


@functools.lru_cache(maxsize=2)
def _load(model_json: str, device: str, names: tuple[str, ...]) -> Components:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from . import speedups

    quiet()
    info = read_json(model_json)
    directory = Path(info["dir"])
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    kw = {"torch_dtype": dtype}
    tokenizer = CLIPTokenizer.from_pretrained(directory / "tokenizer", model_max_length=77)
    text_encoder = CLIPTextModel.from_pretrained(directory / "text_encoder", **kw).to(device)
    unet = UNet2DConditionModel.from_pretrained(directory / "unet", **kw).to(device)
    vae = AutoencoderKL.from_pretrained(directory / "vae", **kw).to(device)
    for m in (text_encoder, unet, vae):
        m.eval().requires_grad_(False)
    unet = speedups.apply(unet, names)
    fmt = torch.channels_last if "channels_last" in names else torch.contiguous_format
    # The VAE decodes in the loaded dtype whatever the UNet runs in; on CUDA it shares the
    # UNet's layout, on the CPU it stays contiguous (fp32 decodes are the reference images).
    vae.to(memory_format=fmt if device.startswith("cuda") else torch.contiguous_format)
    scheduler_config = read_json(directory / "scheduler" / "scheduler_config.json")
    return Components(tokenizer, text_encoder, unet, vae, scheduler_config, device, dtype, info,
                      fmt, names)


load.cache_clear = _load.cache_clear


def check_vae_arg(arg: str) -> str:
    """Check `vae=` without loading anything (dodo.py calls this at load time)."""
    arg = (arg or "model").strip()
    expanded = Path(os.path.expanduser(arg))
    if arg == "model" or not looks_like_path(arg):
        return arg
    if not expanded.is_dir():
        raise ModelError(f"vae directory {arg} does not exist; pass vae=model (the model's own), "
                         f"vae=<AutoencoderKL directory> or vae=<hub id> such as "
                         f"stabilityai/sdxl-vae")
    if not ((expanded / "config.json").exists() or (expanded / "vae" / "config.json").exists()):
        raise ModelError(f"vae directory {arg} has neither config.json nor vae/config.json; "
                         f"pass an AutoencoderKL directory, a pipeline directory, or a hub id")
    return arg


def load_vae(model_json: str, vae_arg: str, device: str = "auto"):
    """The VAE the anomaly analysis examines, and a record of which one: `vae=model` (the
    default) is the model's own; otherwise any diffusers AutoencoderKL, as a hub id or a local
    directory (a VAE folder, or a pipeline folder with vae/), e.g. SDXL's for comparison. A VAE
    from elsewhere is loaded in fp32 (SDXL's VAE overflows in fp16)."""
    arg = (vae_arg or "model").strip()
    if arg == "model":
        comps = load(model_json, device)
        info = read_json(model_json)
        return comps.vae, {"id": f"{info['id']}, its own VAE", "arg": arg,
                           "scaling_factor": comps.vae.config.scaling_factor}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers import AutoencoderKL

    check_vae_arg(arg)
    expanded = Path(os.path.expanduser(arg))
    if expanded.is_dir():
        sub = "vae" if (expanded / "vae" / "config.json").exists() else None
        weights = sorted((expanded / (sub or "")).glob("*.safetensors"))
        digest = hashlib.sha256(b"".join(bytes.fromhex(sha256_file(w)) for w in weights))
        vae = AutoencoderKL.from_pretrained(expanded, subfolder=sub)
        ident = f"{expanded.name}@{digest.hexdigest()[:12]}"
    else:
        try:
            vae = AutoencoderKL.from_pretrained(arg)
        except Exception as exc:  # noqa: BLE001 - one clear line for any fetch problem
            raise ModelError(f"could not load the VAE {arg!r} ({type(exc).__name__}: {exc}); "
                             f"check the id and your network, or pass its directory") from None
        ident = arg
    vae = vae.to(pick_device(device)).eval().requires_grad_(False)
    return vae, {"id": ident, "arg": arg, "scaling_factor": vae.config.scaling_factor}
