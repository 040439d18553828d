"""The embedded preview model: a small SD-1.5-shaped pipeline the project builds itself.

It has SD 1.5's structure where the article's arguments depend on it: a 4-level UNet with three
downsamples (the deepest level is latent/8), cross-attention to a CLIP text encoder at the inner
levels, a 4-block AutoencoderKL (8x pixel-to-latent factor), 4 latent channels, SD 1.5's noise
schedule and sample_size 64 (trained size 512). It is much narrower, and has no self-attention at
the full-resolution level, so that the whole article samples in minutes on two CPU cores.

Weights are random (seeded): its images show that the pipeline works, not what SD 1.5 does. It is
saved in diffusers layout and loaded by pipeline/model.py through the same `from_pretrained` code
as the real model. Building twice gives byte-identical files.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from .files import atomic_write, json_bytes  # noqa: E402

NAME = "preview-sd15-tiny"
SEED = 20240512

# SD 1.5's noise schedule, as in its scheduler/scheduler_config.json.
SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "clip_sample": False,
    "prediction_type": "epsilon", "trained_betas": None, "timestep_spacing": "leading",
}

UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(32, 64, 64, 64), cross_attention_dim=32, attention_head_dim=4,
    norm_num_groups=8,
)

VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=512, layers_per_block=1,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 32, 32, 32), norm_num_groups=8, scaling_factor=0.18215,
)

TEXT = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=77, projection_dim=32, hidden_act="quick_gelu",
)

# SD 1.5's own architecture (its published config files), for GPU benchmarks: random weights of
# exactly this shape cost what the real model costs. `build(out, shape="sd15")` makes it.
SD15 = {
    "unet": dict(UNET, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32),
    "vae": dict(VAE, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
                norm_num_groups=32),
    "text": dict(TEXT, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, projection_dim=768),
}
SHAPES = {"preview": {"unet": UNET, "vae": VAE, "text": TEXT}, "sd15": SD15}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-character map (written out here: transformers 5
    no longer exports it)."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def tokenizer_files() -> tuple[bytes, bytes]:
    """A byte-level BPE vocabulary with no merges: every byte is a token, word-final or not."""
    chars = list(bytes_to_unicode().values())
    vocab = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return json_bytes(vocab), b"#version: 0.2\n"


def build(out: str | Path, shape: str = "preview") -> Path:
    """Build the preview model (or, with shape="sd15", a random model of SD 1.5's full size)
    into `out` in diffusers layout; returns the directory."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    out = Path(out)
    vocab, merges = tokenizer_files()
    n_vocab = len(json.loads(vocab))
    config = SHAPES[shape]
    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(**config["unet"])
    vae = AutoencoderKL(**config["vae"])
    text = CLIPTextModel(CLIPTextConfig(vocab_size=n_vocab, bos_token_id=n_vocab - 2,
                                        eos_token_id=n_vocab - 1, pad_token_id=n_vocab - 1,
                                        **config["text"]))
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        import shutil
        shutil.rmtree(tmp)
    unet.save_pretrained(tmp / "unet")
    vae.save_pretrained(tmp / "vae")
    text.save_pretrained(tmp / "text_encoder")
    atomic_write(tmp / "tokenizer" / "vocab.json", vocab)
    atomic_write(tmp / "tokenizer" / "merges.txt", merges)
    atomic_write(tmp / "tokenizer" / "tokenizer_config.json", json_bytes({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "do_lower_case": True}))
    atomic_write(tmp / "scheduler" / "scheduler_config.json", json_bytes(SCHEDULER))
    atomic_write(tmp / "model_index.json", json_bytes({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "_name_or_path": NAME if shape == "preview" else f"random-{shape}", "preview": True,
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "safety_checker": [None, None], "feature_extractor": [None, None],
        "requires_safety_checker": False}))
    if out.exists():
        import shutil
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
