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
# The trained miniature (pipeline/train.py): the preview's cheap full-resolution level (32
# channels, no self-attention there, unlike SD 1.5) with wider inner levels, where compute is cheap.
MINI = {"unet": dict(UNET, block_out_channels=(32, 64, 128, 128)), "vae": VAE,
        "text": dict(TEXT, hidden_size=64, intermediate_size=128, projection_dim=64)}
MINI["unet"]["cross_attention_dim"] = 64
SHAPES = {"preview": {"unet": UNET, "vae": VAE, "text": TEXT}, "mini": MINI, "sd15": SD15}


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


def learn_merges(words) -> list[tuple[str, str]]:
    """Byte-pair merges (most frequent adjacent pair first, ties in sorted order) until every
    word is one symbol: CLIP's tokenizer, applying them, gives each of these words one token."""
    byte = bytes_to_unicode()
    pieces = [[byte[b] for b in w.encode()] for w in sorted(set(words)) if w]
    pieces = [p[:-1] + [p[-1] + "</w>"] for p in pieces]
    merges = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for p in pieces:
            for pair in zip(p, p[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        for i, p in enumerate(pieces):
            out, k = [], 0
            while k < len(p):
                if k + 1 < len(p) and (p[k], p[k + 1]) == best:
                    out.append(p[k] + p[k + 1])
                    k += 2
                else:
                    out.append(p[k])
                    k += 1
            pieces[i] = out


def tokenizer_files(words=()) -> tuple[bytes, bytes]:
    """A byte-level BPE vocabulary: every byte is a token, word-final or not, and with `words`
    the merges that make each of those words one token (the trained miniature's caption
    vocabulary: a tiny text encoder need not learn to spell them). Without words, no merges."""
    chars = list(bytes_to_unicode().values())
    vocab = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = learn_merges(words)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    return json_bytes(vocab), text.encode()


def write_tokenizer(directory: Path, words=()) -> Path:
    """The CLIP tokenizer's files (tokenizer_files), loadable with CLIPTokenizer.from_pretrained."""
    vocab, merges = tokenizer_files(words)
    atomic_write(directory / "vocab.json", vocab)
    atomic_write(directory / "merges.txt", merges)
    atomic_write(directory / "tokenizer_config.json", json_bytes({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "do_lower_case": True}))
    return directory


def text_config(config: dict, words=()):
    """CLIPTextConfig for the tokenizer of `tokenizer_files(words)`."""
    from transformers import CLIPTextConfig

    n_vocab = len(json.loads(tokenizer_files(words)[0]))
    return CLIPTextConfig(vocab_size=n_vocab, bos_token_id=n_vocab - 2, eos_token_id=n_vocab - 1,
                          pad_token_id=n_vocab - 1, **config)


def build(out: str | Path, shape: str = "preview") -> Path:
    """Build a random-weights model (the preview architecture, "mini", the trained miniature's
    architecture, or "sd15", SD 1.5's full size) into `out` in diffusers layout."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    config = SHAPES[shape]
    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(**config["unet"])
    vae = AutoencoderKL(**config["vae"])
    text = CLIPTextModel(text_config(config["text"]))
    return save(out, unet, vae, text, NAME if shape == "preview" else f"random-{shape}")


def save(out: str | Path, unet, vae, text, name: str, extra: dict[str, bytes] | None = None,
         dtype=None, words=()) -> Path:
    """Save the three networks, the tokenizer and SD 1.5's scheduler config into `out` in
    diffusers layout (written beside it, then swapped in whole). `extra` adds files (relative
    path -> bytes); `dtype` converts the weights for storage (e.g. torch.float16); `words` are
    the tokenizer's whole-word tokens (tokenizer_files)."""
    import shutil

    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    for net, sub in ((unet, "unet"), (vae, "vae"), (text, "text_encoder")):
        if dtype is not None:
            import copy
            net = copy.deepcopy(net).to(dtype)
        net.save_pretrained(tmp / sub)
    write_tokenizer(tmp / "tokenizer", words)
    atomic_write(tmp / "scheduler" / "scheduler_config.json", json_bytes(SCHEDULER))
    atomic_write(tmp / "model_index.json", json_bytes({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "_name_or_path": name, "preview": True,
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "safety_checker": [None, None], "feature_extractor": [None, None],
        "requires_safety_checker": False}))
    for rel, data in (extra or {}).items():
        atomic_write(tmp / rel, data)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
