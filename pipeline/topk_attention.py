"""Top-k attention fused into two Triton kernels, so no score matrix is ever held in memory.

The explicit path of attention.py writes each block of scores to memory, selects each row's k-th
largest, and reads the block back several times: at 768x768 on SD 1.5 that traffic makes the
top-k variants cost many times the fused attention. Here the scores live only in registers, one
tile of queries x keys at a time, as in FlashAttention:

1. `_threshold`: each row's k-th largest score, exactly. The scores are the fp16 products the
   explicit path computes (q.k rounded to fp16, then scaled: scaling keeps their order), so each
   is one of 65,536 bit patterns; mapped to an order-preserving 16-bit key, the k-th largest key
   is found by a radix search, two bits per pass over the keys: after 8 passes every bit is
   known. Each pass counts, per row, the keys at or above three candidates; the largest candidate
   with at least k keys at or above it extends the prefix.
2. `_attend`: one FlashAttention-style pass with an online softmax, keeping the keys at or above
   the threshold: for topk-mask only they enter the weighted sum and the denominator; for
   topk-denominator every key enters the weighted sum and only they the denominator. The row's
   largest score is always kept, so the running maximum over all keys is a safe shift for both.

Ties at the threshold are all kept, as in the explicit path (`scores >= k-th largest`). The
results equal the explicit path's up to fp16 rounding of the weights (tests run the kernels on
the CPU under TRITON_INTERPRET=1). The tile shape is fixed (TILE), not autotuned: a choice
made by timing at run time could differ between runs, and with it the order of the sums, and
the same inputs must give the same bytes. benchmarks/attention_variants.py times each of TILES.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

MODES = {"topk-mask": 0, "topk-denominator": 1}
PASSES = 8      # 2 bits each: the 16 bits of an fp16 score's key

# (queries per program, keys per tile, warps, pipeline stages): TILE is used, TILES are timed
TILES = [(64, 64, 4, 2), (128, 64, 4, 2), (128, 64, 8, 3), (64, 128, 4, 2), (128, 128, 8, 2)]
TILE = TILES[0]


@triton.jit
def _keys(q, k_ptrs, start, n, stride_kn, dim_ok, BLOCK_N: tl.constexpr):
    """One tile's fp16 scores (q.k rounded as a fp16 matmul rounds) and their 16-bit keys;
    `dim_ok` [BLOCK_D, 1] masks the padding of the head size (read as zeros)."""
    cols = start + tl.arange(0, BLOCK_N)
    kt = tl.load(k_ptrs + start * stride_kn, mask=(cols < n)[None, :] & dim_ok, other=0.0)
    s16 = tl.dot(q, kt).to(tl.float16)
    bits = s16.to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    key = tl.where(bits >= 0x8000, 0xFFFF - bits, bits + 0x8000)  # negative: reversed order
    key = tl.where((cols < n)[None, :], key, -1)                   # past the end: never counted
    return s16, key


@triton.jit
def _program(Q, K, n, d, sqb, sqh, sqn, sqd, skb, skh, skn, skd, H,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's batch, head, their flat index, query rows, head dims, its block of
    queries (zeros past the end and in the head-size padding) and its first tile's key pointers."""
    pid_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // H, bh % H
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sqn + dims[None, :] * sqd,
                mask=(rows[:, None] < n) & (dims[None, :] < d), other=0.0)
    k_ptrs = K + b * skb + h * skh + tl.arange(0, BLOCK_N)[None, :] * skn + dims[:, None] * skd
    return b, h, bh, rows, dims, q, k_ptrs


@triton.jit
def _threshold(Q, K, T, n, kk, d,
               sqb, sqh, sqn, sqd, skb, skh, skn, skd, H,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
               PASSES: tl.constexpr):
    b, h, bh, rows, dims, q, k_ptrs = _program(Q, K, n, d, sqb, sqh, sqn, sqd, skb, skh, skn,
                                               skd, H, BLOCK_M, BLOCK_N, BLOCK_D)
    prefix = tl.zeros([BLOCK_M], dtype=tl.int32)
    for p in tl.static_range(PASSES):
        step = 1 << (14 - 2 * p)
        n1 = tl.zeros([BLOCK_M], dtype=tl.int32)
        n2 = tl.zeros([BLOCK_M], dtype=tl.int32)
        n3 = tl.zeros([BLOCK_M], dtype=tl.int32)
        for start in range(0, n, BLOCK_N):
            _, key = _keys(q, k_ptrs, start, n, skn, dims[:, None] < d, BLOCK_N)
            n1 += tl.sum((key >= (prefix + step)[:, None]).to(tl.int32), axis=1)
            n2 += tl.sum((key >= (prefix + 2 * step)[:, None]).to(tl.int32), axis=1)
            n3 += tl.sum((key >= (prefix + 3 * step)[:, None]).to(tl.int32), axis=1)
        prefix = tl.where(n3 >= kk, prefix + 3 * step,
                          tl.where(n2 >= kk, prefix + 2 * step,
                                   tl.where(n1 >= kk, prefix + step, prefix)))
    tl.store(T + bh * n + rows, prefix, mask=rows < n)


@triton.jit
def _attend(Q, K, V, T, O, n, d, scale,
            sqb, sqh, sqn, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sob, soh, son, sod, H,
            MODE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
            BLOCK_D: tl.constexpr):
    b, h, bh, rows, dims, q, k_ptrs = _program(Q, K, n, d, sqb, sqh, sqn, sqd, skb, skh, skn,
                                               skd, H, BLOCK_M, BLOCK_N, BLOCK_D)
    v_ptrs = V + b * svb + h * svh + tl.arange(0, BLOCK_N)[:, None] * svn + dims[None, :] * svd
    threshold = tl.load(T + bh * n + rows, mask=rows < n, other=0)
    m = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for start in range(0, n, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        s16, key = _keys(q, k_ptrs, start, n, skn, dims[:, None] < d, BLOCK_N)
        x = tl.where((cols < n)[None, :], s16.to(tl.float32) * scale, float("-inf"))
        keep = key >= threshold[:, None]
        m_new = tl.maximum(m, tl.max(x, axis=1))
        alpha = tl.exp(m - m_new)
        p = tl.exp(x - m_new[:, None])
        kept = tl.where(keep, p, 0.0)
        l = l * alpha + tl.sum(kept, axis=1)
        weights = kept if MODE == 0 else p
        v = tl.load(v_ptrs + start * svn, mask=(cols < n)[:, None] & (dims[None, :] < d),
                    other=0.0)
        acc = acc * alpha[:, None] + tl.dot(weights.to(v.dtype), v)
        m = m_new
    out = acc / l[:, None]
    tl.store(O + b * sob + h * soh + rows[:, None] * son + dims[None, :] * sod,
             out.to(O.dtype.element_ty), mask=(rows[:, None] < n) & (dims[None, :] < d))


def _tile() -> dict:
    m, n, warps, stages = TILE
    return {"BLOCK_M": m, "BLOCK_N": n, "num_warps": warps, "num_stages": stages}


def _grid(n: int, heads: int):
    return (triton.cdiv(n, TILE[0]), heads)


def _block_d(d: int) -> int:
    """The head size padded to what tl.dot takes (a power of two, at least 16)."""
    return max(16, triton.next_power_of_2(d))


def thresholds(q: torch.Tensor, k: torch.Tensor, kk: int) -> torch.Tensor:
    """Each row's k-th largest fp16 score as its 16-bit key, [B*heads, n] int32 (for tests)."""
    B, H, n, d = q.shape
    T = torch.empty(B * H, n, dtype=torch.int32, device=q.device)
    _threshold[_grid(n, B * H)](q, k, T, n, kk, d, *q.stride(), *k.stride(), H,
                                BLOCK_D=_block_d(d), PASSES=PASSES, **_tile())
    return T


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, variant: str,
           kk: int) -> torch.Tensor:
    """Top-k attention over [B, heads, n, d] fp16 tensors; the output is [B, heads, n, d]."""
    B, H, n, d = q.shape
    T = thresholds(q, k, kk)
    out = torch.empty_like(q)
    _attend[_grid(n, B * H)](q, k, v, T, out, n, d, scale, *q.stride(), *k.stride(),
                             *v.stride(), *out.stride(), H, MODE=MODES[variant],
                             BLOCK_D=_block_d(d), **_tile())
    return out


def key_of(values: torch.Tensor) -> torch.Tensor:
    """The order-preserving 16-bit key of fp16 values, as the kernels compute it (for tests)."""
    bits = values.half().view(torch.int16).to(torch.int32) & 0xFFFF
    return torch.where(bits >= 0x8000, 0xFFFF - bits, bits + 0x8000)
