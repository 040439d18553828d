"""Attention rules: the `attention` kind of variant in figures.toml (section 6 of the article).

Every rule changes self-attention only, per UNet level, and has one signature,

    rule(scores, n_train) -> weights

where `scores` are the scaled logits q.k/sqrt(d) for a block of queries against all n keys of the
layer, and n_train is that layer's key count at the trained size (512x512 for SD 1.5). Cross-
attention keeps the model's own processors: its key count (77 text tokens) never changes.

`usual` and `logit-scale` also have a fused form (a multiplier on the softmax scale passed to
`scaled_dot_product_attention`), used whenever no probe is asking for the probabilities. The
top-k rules are computed explicitly, a block of queries at a time, so that the score matrix in
memory never exceeds a budget whatever the image size: BUDGET_BYTES on a GPU, where large blocks
keep the kernels busy, and CPU_BUDGET_BYTES on the CPU, where a block that stays in the cache makes
the explicit path three times faster than one that streams through memory (measured by
benchmarks/attention_variants.py). On CUDA the top-k rules also have a fused form
(pipeline/topk_attention.py, two Triton kernels that never hold a score matrix), used when
KERNEL is on; it stays off until a GPU run has measured it against the explicit path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .geometry import key_counts, logit_factor

BUDGET_BYTES = 256 * 2**20  # the most one block of fp32 scores (and its temporaries) may take
CPU_BUDGET_BYTES = 4 * 2**20  # the same on the CPU: about one core's share of the cache
_TEMPORARIES = 3            # scores, exp/probabilities and the top-k selection live together
KERNEL = False              # top-k variants through the Triton kernels (CUDA, fp16, no probe)


def usual(scores: torch.Tensor, n_train: int) -> torch.Tensor:
    """The model's own attention: softmax over every key."""
    return scores.softmax(-1)


def logit_scale(scores: torch.Tensor, n_train: int) -> torch.Tensor:
    """Scale the logits so the attention's entropy stays near what it was at the trained size."""
    return (scores * logit_factor(scores.shape[-1], n_train)).softmax(-1)


def kth_largest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's k-th largest value, [..., n] -> [..., 1]. On the CPU numpy's introselect
    (about twice as fast as torch.topk there; splitting its rows over threads measured no gain
    beside torch's own busy threads); elsewhere torch.topk."""
    n = scores.shape[-1]
    if scores.device.type != "cpu":
        return scores.topk(k, dim=-1, sorted=False).values.amin(-1, keepdim=True)
    import numpy as np

    flat = scores.detach().float().reshape(-1, n).numpy()
    rows = torch.from_numpy(np.partition(flat, n - k, axis=-1)[:, n - k])
    return rows.to(scores.dtype).reshape(*scores.shape[:-1], 1)


def topk_denominator(scores: torch.Tensor, n_train: int) -> torch.Tensor:
    """exp(x - max) over the sum of the k = n_train largest exp(x - max). With more keys than at
    the trained size the weights sum to more than 1; with n <= n_train this is the softmax."""
    k = min(n_train, scores.shape[-1])
    if k == scores.shape[-1]:
        return scores.softmax(-1)
    top = scores >= kth_largest(scores, k)
    e = (scores - scores.amax(-1, keepdim=True)).exp_()
    return e.div_((e * top).sum(-1, keepdim=True))


def topk_mask(scores: torch.Tensor, n_train: int) -> torch.Tensor:
    """Keys outside each query's k = n_train largest scores get no weight; softmax over the rest
    (the row's maximum is always kept, so exp(x - max) over the kept keys is that softmax)."""
    k = min(n_train, scores.shape[-1])
    if k == scores.shape[-1]:
        return scores.softmax(-1)
    top = scores >= kth_largest(scores, k)
    e = (scores - scores.amax(-1, keepdim=True)).exp_().mul_(top)
    return e.div_(e.sum(-1, keepdim=True))


VARIANTS = {"usual": usual, "logit-scale": logit_scale, "topk-denominator": topk_denominator,
            "topk-mask": topk_mask}

# Variants that keep each query's n_train largest scores (fused form: topk_attention.py).
TOPK = ("topk-denominator", "topk-mask")

# Variants whose weights are a softmax of rescaled logits: fused attention with scale * factor.
FUSED = {"usual": lambda n, n_train: 1.0, "logit-scale": logit_factor}


def block_budget(device: torch.device) -> int:
    """The score-block budget for tensors on `device`."""
    return CPU_BUDGET_BYTES if device.type == "cpu" else BUDGET_BYTES


def query_block(batch_heads: int, n_keys: int, budget: int = BUDGET_BYTES) -> int:
    """How many queries one block may hold so its fp32 scores and temporaries fit the budget."""
    return max(1, budget // (batch_heads * n_keys * 4 * _TEMPORARIES))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, variant: str,
           n_train: int, probe=None, budget: int | None = None) -> torch.Tensor:
    """Attention over [B, heads, N, d] tensors with one variant's rule. `probe(weights)`, when
    given, sees every block of weights (fp32, [B, heads, queries, keys]). `budget` defaults to
    the device's (block_budget)."""
    n = k.shape[-2]
    if probe is None and (variant in FUSED or (variant in TOPK and n <= n_train)):
        # (with no more keys than in training a top-k rule keeps them all: it is the softmax,
        # and takes the usual attention's own kernel, so its images are the usual ones)
        factor = FUSED[variant](n, n_train) if variant in FUSED else 1.0
        return F.scaled_dot_product_attention(q, k, v, scale=scale * factor)
    if (KERNEL and probe is None and variant in TOPK and q.is_cuda
            and q.dtype == torch.float16 and n_train < n):
        from . import topk_attention

        return topk_attention.attend(q, k, v, scale, variant, n_train)
    rule = VARIANTS[variant]
    rows = query_block(q.shape[0] * q.shape[1], n, budget or block_budget(q.device))
    out = torch.empty_like(q)
    # bf16 (the CPU's autocast) would round each logit to 1/256 of its size and each weight
    # likewise: the explicit path computes in fp32 there, as the fused kernel does inside;
    # autocast is off here so that it does not cast the matmuls back down
    work = torch.float32 if q.dtype == torch.bfloat16 else q.dtype
    with torch.autocast(q.device.type, enabled=False):
        kt = k.to(work).transpose(-1, -2)
        vw = v.to(work)
        for start in range(0, q.shape[-2], rows):
            scores = (q[..., start:start + rows, :].to(work) @ kt).float().mul_(scale)
            weights = rule(scores, n_train)
            if probe is not None:
                probe(weights)
            out[..., start:start + rows, :] = weights.to(work) @ vw
    return out


# --- installing a variant on a diffusers UNet --------------------------------------------------

def level_of(name: str, levels: int) -> int:
    """UNet level (0 = the latent's own resolution) of an attention module, from its name."""
    part, *rest = name.split(".")
    if part == "down_blocks":
        return int(rest[0])
    if part == "mid_block":
        return levels - 1
    if part == "up_blocks":
        return levels - 1 - int(rest[0])
    raise ValueError(f"cannot place attention module {name!r} in a UNet level")


def self_attention(attn, hidden_states, encoder_hidden_states, attention_mask, name: str,
                   attend_tokens) -> torch.Tensor:
    """A diffusers self-attention layer's computation around `attend_tokens(q, k, v)`, which gets
    [B, heads, n, d] queries, keys and values and returns the attended values in that shape: the
    projections, the output layer, the residual and the rescaling are the layer's own."""
    if encoder_hidden_states is not None or attention_mask is not None:
        raise ValueError(f"{name}: these variants apply to self-attention only")
    if attn.spatial_norm is not None or attn.group_norm is not None or attn.norm_q is not None:
        raise ValueError(f"{name}: this attention layout is not supported by variants")
    x = hidden_states
    shape4 = x.shape if x.ndim == 4 else None
    if shape4 is not None:
        x = x.flatten(2).transpose(1, 2)
    b, n, _ = x.shape
    heads = attn.heads
    q, k, v = (f(x).view(b, n, heads, -1).transpose(1, 2) for f in (attn.to_q, attn.to_k, attn.to_v))
    out = attend_tokens(q, k, v)
    out = out.transpose(1, 2).reshape(b, n, -1).to(q.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    if shape4 is not None:
        out = out.transpose(1, 2).reshape(shape4)
    if attn.residual_connection:
        out = out + hidden_states
    return out / attn.rescale_output_factor


class VariantProcessor:
    """A diffusers attention processor for one self-attention layer under one rule. With a step
    `window` (pipeline/interventions.py), outside it the layer's own processor runs instead."""

    def __init__(self, name: str, variant: str, n: int, n_train: int, probe=None,
                 original=None, window=None):
        self.name, self.variant, self.n, self.n_train, self.probe = name, variant, n, n_train, probe
        self.original, self.window = original, window

    @property
    def factor(self) -> float:
        """The multiplier this layer applies to the softmax scale (1 unless logit-scale)."""
        return FUSED[self.variant](self.n, self.n_train) if self.variant in FUSED else 1.0

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):
        if self.window is not None and not self.window.active:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask,
                                 temb, *args, **kwargs)
        probe = self.probe.hook(self) if self.probe is not None and self.probe.active else None

        def rule(q, k, v):
            return attend(q, k, v, attn.scale, self.variant, self.n_train, probe)

        return self_attention(attn, hidden_states, encoder_hidden_states, attention_mask,
                              self.name, rule)


def self_attention_layers(unet) -> list[str]:
    """Names of the UNet's self-attention layers, in the order a forward pass runs them."""
    names = [n.removesuffix(".processor") for n in unet.attn_processors if ".attn1." in n]
    order = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
    return sorted(names, key=lambda n: (order[n.split(".")[0]], _numbers(n)))


def _numbers(name: str) -> list[int]:
    return [int(p) for p in name.split(".") if p.isdigit()]


def originals(unet) -> dict:
    """The model's own attention processors by name (remembered the first time)."""
    original = getattr(unet, "_original_attn_processors", None)
    if original is None:
        original = dict(unet.attn_processors)
        unet._original_attn_processors = original
    return original


def set_self_attention(unet, make) -> dict:
    """Give every self-attention layer the processor `make(name, level, own_processor)` returns
    (None keeps the layer's own); every other layer gets the model's own processor back.
    Returns the installed processors by layer name."""
    processors = dict(originals(unet))
    installed = {}
    for name in self_attention_layers(unet):
        own = processors[f"{name}.processor"]
        proc = make(name, level_of(name, len(unet.down_blocks)), own)
        if proc is not None:
            processors[f"{name}.processor"] = installed[name] = proc
    unet.set_attn_processor(processors)
    return installed


def install(unet, variant: str, geometry: dict, width: int, height: int, probe=None,
            window=None) -> dict:
    """Install the rule `variant` on every self-attention layer for images of width x height
    (inside the step `window`, when given); everything else gets the model's own processor
    back. Returns the VariantProcessors by layer name."""
    if variant == "usual" and probe is None:
        return set_self_attention(unet, lambda name, level, own: None)
    counts = key_counts(geometry, width, height)
    trained = key_counts(geometry, geometry["train_size"], geometry["train_size"])
    return set_self_attention(unet, lambda name, level, own: VariantProcessor(
        name, variant, counts[level], trained[level], probe, own, window))


def install_rule(unet, change: dict, geometry: dict, width: int, height: int, window):
    """The `attention` kind (pipeline/variants.py): one rule on every self-attention layer,
    inside its step window."""
    install(unet, change["rule"], geometry, width, height, window=window)
    return lambda: restore(unet)


def restore(unet) -> None:
    """Give every layer the model's own processor back (after a variant or a probe)."""
    original = getattr(unet, "_original_attn_processors", None)
    if original is not None:
        unet.set_attn_processor(dict(original))
