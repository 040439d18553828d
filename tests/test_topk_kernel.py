"""The fused top-k attention (pipeline/topk_attention.py) is a CUDA path; on the CPU its Triton
kernels run under Triton's interpreter (TRITON_INTERPRET=1, set before triton is imported, hence a
subprocess per check), which executes the same kernel code on CPU tensors. Checked here: the
threshold search finds each row's k-th largest score exactly (ties, rows and keys that are not
a multiple of the block, a head size that is not a power of two, strided views like the ones the
attention processor passes), and both variants give what the explicit rules give."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Triton 3.6's interpreter (the one torch 2.11 brings, as on the GPU image) fails on every loop
# bound that is a kernel argument under numpy 2.4 and later (it converts a one-element array with
# int()); 3.7 and later run these checks. The GPU runs the kernels compiled, not interpreted.
pytest.importorskip("triton", minversion="3.7")
ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import torch
from pipeline import attention, topk_attention as ta

def views(B, H, n, d, make):
    # [B, n, H*d] projections viewed as [B, H, n, d], as VariantProcessor does: strided views
    return [make(B, n, H * d).view(B, n, H, d).transpose(1, 2) for _ in range(3)]

def reference_key(q, k, kk):
    s16 = (q.float() @ k.float().transpose(-1, -2)).half().float()
    return ta.key_of(s16.topk(kk, dim=-1).values.amin(-1)).flatten(0, 1).to(torch.int32), s16
"""


def interpret(body: str, interpreted: bool = True) -> str:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TRITON_INTERPRET": "1" if interpreted else "0", "PYTHONPATH": path}
    code = SETUP + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_the_threshold_is_each_rows_kth_largest_score_exactly_with_ties():
    # integer entries: every product exact in fp16, and many ties at the threshold
    out = interpret("""
        torch.manual_seed(0)
        for n, kk in ((200, 77), (64, 1), (130, 129), (96, 96)):
            q, k, _ = views(2, 2, n, 40, lambda *s: torch.randint(-3, 4, s).half())
            expect, _ = reference_key(q, k, kk)
            got = ta.thresholds(q, k, kk)
            print(n, kk, torch.equal(got, expect))
    """)
    lines = out.split()
    assert len(lines) == 4 * 3 and lines[2::3] == ["True"] * 4, out


def test_the_threshold_is_exact_on_random_fp16_scores():
    out = interpret("""
        torch.manual_seed(1)
        q, k, _ = views(1, 3, 257, 40, lambda *s: (3 * torch.randn(s)).half())
        expect, _ = reference_key(q, k, 100)
        print(int((ta.thresholds(q, k, 100) != expect).sum()))
    """)
    assert out.strip() == "0"


@pytest.mark.parametrize("variant", ["topk-mask", "topk-denominator"])
def test_the_fused_variants_give_what_the_explicit_rules_give(variant):
    out = interpret(f"""
        torch.manual_seed(2)
        q, k, v = views(2, 2, 150, 40, lambda *s: torch.randn(s).half())
        scale, kk = 40 ** -0.5, 60
        got = ta.attend(q, k, v, scale, "{variant}", kk).float()
        _, s16 = reference_key(q, k, kk)
        expect = attention.VARIANTS["{variant}"](s16 * scale, kk) @ v.float()
        usual = (s16 * scale).softmax(-1) @ v.float()
        print(float((got - expect).norm() / expect.norm()),
              float((usual - expect).norm() / expect.norm()))
    """)
    error, variant_effect = map(float, out.split())
    assert error < 2e-3            # fp16 rounding of the weights, nothing more
    assert variant_effect > 0.05   # and the variant is not the usual attention in disguise


def test_every_timed_tile_shape_gives_the_same_thresholds_and_outputs():
    out = interpret("""
        torch.manual_seed(3)
        q, k, v = views(1, 2, 200, 40, lambda *s: torch.randn(s).half())
        results = []
        for tile in ta.TILES:
            ta.TILE = tile
            results.append((ta.thresholds(q, k, 70), ta.attend(q, k, v, 0.15, "topk-mask", 70)))
        expect, _ = reference_key(q, k, 70)
        print(all(torch.equal(t, expect) for t, _ in results),
              max(float((o.float() - results[0][1].float()).abs().max()) for _, o in results))
    """)
    exact, spread = out.split()
    assert exact == "True" and float(spread) < 2e-3


def test_the_kernels_compile_to_machine_code_for_an_h100_at_every_tile():
    """The interpreter runs the kernels' Python; this compiles them as a GPU would (Triton's
    compiler and the ptxas it ships, for sm_90, no GPU needed), which the interpreter does not:
    type and layout errors, and shared memory beyond an H100's, show here."""
    out = interpret("""
        import os, triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
        from pipeline import topk_attention as ta
        def compile_(fn, consts, warps, stages):
            types = {a: "constexpr" if a in consts else "*fp16" if a in ("Q", "K", "V", "O") else
                     "*i32" if a == "T" else "fp32" if a == "scale" else "i32"
                     for a in fn.arg_names}
            src = ASTSource(fn=fn, signature=types, constexprs={
                (fn.arg_names.index(a),): v for a, v in consts.items()})
            opts = {"num_warps": warps, "num_stages": stages}
            return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=opts)
        for m, n, warps, stages in ta.TILES:
            tile = {"BLOCK_M": m, "BLOCK_N": n, "BLOCK_D": 64}
            for fn, extra in ((ta._threshold, {"PASSES": ta.PASSES}),
                              (ta._attend, {"MODE": 0}), (ta._attend, {"MODE": 1})):
                kernel = compile_(fn, {**tile, **extra}, warps, stages)
                fits = kernel.metadata.shared <= 227 * 1024  # an H100's shared memory per block
                print(fn.__name__, m, n, fits and len(kernel.asm["cubin"]) > 0)
    """, interpreted=False)
    lines = out.split("\n")
    assert len([x for x in lines if x]) == 3 * 5 and all(x.endswith("True") for x in lines if x)
