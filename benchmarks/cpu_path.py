"""The CPU sampling path: today's (speedups=none: fp32, contiguous) against the chosen one
(pipeline/speedups.DEFAULTS["cpu"]), side by side in one run on the shipped preview model.
Prints figures and writes them under benchmarks/results/ (cpu_path-*.json/csv).

    python benchmarks/cpu_path.py                          # every part (about 20 min on 2 cores)
    python benchmarks/cpu_path.py --parts peak,calls       # the per-call table only
    python benchmarks/cpu_path.py --parts calls --compile 512,768   # also torch.compile there

Parts:
  peak    this CPU's matmul peak on the threads torch uses, fp32 and bf16 (the ceiling each
          configuration's fraction-of-peak is taken against)
  calls   one UNet call on the article's CFG batch at every size the default build samples, per
          configuration (each speed-up alone and together; repeats interleaved across
          configurations so drift in a shared machine hits all alike; median), with the counted
          FLOPs, the fraction of the peak for its dtype, and with --compile Inductor's first
          call set against the calls it saves (break-even) and the calls the build makes
  build   the default build's sampling: every generation a plain `doit` samples, through the
          pipeline's own sample_generations, under each path (paths alternate per size)
  eval    one evaluation set, --eval-seeds generations at --eval-sizes (usual attention), under
          each path: the time, then per generation the detector's class (none / one / two or
          more) on the VAE decode: agreement between the paths, McNemar's exact test on each
          share, the paired difference of the colour error
  approx  the approximate decoder distilled from each path's latents (from `build`): held-out PSNR
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

from common import ROOT, share, unet_flops, write_results

PARTS = ("peak", "calls", "build", "eval", "approx")
CONFIGS = ("none", "channels_last", "bf16_autocast", "channels_last+bf16_autocast")
COMPILED = "channels_last+bf16_autocast+compiled"
STEP = "channels_last+bf16_autocast"  # the default's UNet speed-ups without its workers
CLASSES = ("none", "one", "two or more")


def matmul_peak(dtype, n: int = 2048, repeats: int = 10, budget_s: float = 2.0) -> float:
    """Best TFLOP/s of a square matmul in `dtype` on this CPU (torch's own threads), n x n or
    smaller where `repeats` of the next size up would overrun `budget_s`: a CPU without bf16
    instructions emulates bf16 at a few hundred MFLOP/s, where one 2048 x 2048 product takes a
    minute."""
    import torch

    side = 256
    while True:
        a = torch.randn(side, side).to(dtype)
        b = torch.randn(side, side).to(dtype)
        t = time.perf_counter()
        a @ b
        if side >= n or 8 * (time.perf_counter() - t) * repeats > budget_s:
            break
        side *= 2
    n = side
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e12


def load(model_json: str, path: str):
    from pipeline import model

    return model.load(model_json, "cpu", path)


def part_calls(model_json, spec, geometry, sizes, peak, args) -> list[dict]:
    import torch

    from pipeline import sampling

    configs = list(CONFIGS) + [COMPILED]  # (timed at the --compile sizes only)
    comps = {c: load(model_json, c) for c in CONFIGS}  # the compiled one is loaded per size
    flops = {s: unet_flops(comps["none"].unet, geometry, s) for s in sizes}
    calls_in_build = {}
    for gens in spec.by_size(sampling.evaluation_generations(
            spec, comps["none"].info, spec.evaluation["default_seeds"])).values():
        key = gens[0].width
        calls_in_build[key] = calls_in_build.get(key, 0) + len(gens) * spec.sampling["steps"]
    rows = []
    for size in sizes:
        for gens in args.batches:
            side = size // geometry["vae_factor"]
            g = torch.Generator().manual_seed(size)
            x = torch.randn(2 * gens, geometry["latent_channels"], side, side, generator=g)
            ctx = torch.randn(2 * gens, 77, geometry["cross_attention_dim"], generator=g)
            t = torch.tensor(500.0)
            inputs = {c: x.to(memory_format=comps[c].memory_format) for c in CONFIGS}
            times = {c: [] for c in CONFIGS}
            outs = {}
            with torch.no_grad():
                for c in CONFIGS:  # warm-up, and the output each computes
                    outs[c] = comps[c].unet(inputs[c], t, encoder_hidden_states=ctx).sample.float()
                for _ in range(args.repeats):
                    for c in CONFIGS:
                        start = time.perf_counter()
                        comps[c].unet(inputs[c], t, encoder_hidden_states=ctx)
                        times[c].append(time.perf_counter() - start)
                first = None
                if str(size) in args.compile.split(",") and gens == 1:
                    torch._dynamo.reset()  # a fresh compiled UNet per size
                    from pipeline import model

                    model.load.cache_clear()
                    comps[COMPILED] = load(model_json, COMPILED)
                    inputs[COMPILED] = inputs["channels_last+bf16_autocast"]
                    start = time.perf_counter()
                    outs[COMPILED] = comps[COMPILED].unet(inputs[COMPILED], t,
                                                          encoder_hidden_states=ctx).sample.float()
                    first = time.perf_counter() - start
                    times[COMPILED] = []
                    for _ in range(args.repeats):
                        start = time.perf_counter()
                        comps[COMPILED].unet(inputs[COMPILED], t, encoder_hidden_states=ctx)
                        times[COMPILED].append(time.perf_counter() - start)
                    del comps[COMPILED]
                    model.load.cache_clear()
                    comps.update({c: load(model_json, c) for c in CONFIGS})
            base = statistics.median(times["none"])
            for c in configs:
                if c not in times:
                    continue
                per_call = statistics.median(times[c])
                bf16 = "bf16" in c
                achieved = flops[size] * 2 * gens / per_call / 1e12
                diff = ((outs[c] - outs["none"]).norm() / outs["none"].norm()).item()
                row = {"config": c, "size": size, "unet_batch": 2 * gens,
                       "seconds_per_call": round(per_call, 5),
                       "seconds_per_generation_step": round(per_call / gens, 5),
                       "vs_none": round(base / per_call, 3),
                       "gflop_per_call": round(flops[size] * 2 * gens / 1e9, 2),
                       "tflops": round(achieved, 4),
                       "fraction_of_peak": share(achieved, peak["bf16" if bf16 else "fp32"]),
                       "rel_diff_vs_none": float(f"{diff:.3g}"),
                       "first_call_s": round(first, 2) if c == COMPILED else None,
                       "compile_break_even_calls": (
                           round((first - per_call) / (base - per_call))
                           if c == COMPILED and per_call < base else None),
                       "calls_in_default_build": calls_in_build.get(size, 0)}
                rows.append(row)
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def part_build(model_json, spec, paths, peak) -> tuple[list[dict], dict]:
    """Sample every generation of the default build under each path; returns rows and latents.
    Each row's TFLOP/s counts the UNet's FLOPs (CFG pair, every step) over the wall time, and
    its fraction of the peak is taken against the matmul peak of the dtype the path runs in."""
    from pipeline import sampling

    comps = {p: load(model_json, p) for p in paths}
    geometry = comps[paths[0]].info["geometry"]
    flops = {}
    gens_by_size = spec.by_size(sampling.evaluation_generations(
        spec, comps[paths[0]].info, spec.evaluation["default_seeds"]))
    latents = {p: {} for p in paths}
    rows = []
    for size, gens in sorted(gens_by_size.items()):
        for p in paths:
            start = time.perf_counter()
            sampling.sample_generations(comps[p], spec, gens, "auto",
                                        lambda chunk, zs: latents[p].update(zip(chunk, zs)))
            seconds = time.perf_counter() - start
            if size not in flops:
                flops[size] = (unet_flops(comps[paths[0]].unet, geometry, gens[0].width)
                               * 2 * spec.sampling["steps"] * len(gens))
            rows.append(build_row(p, size, len(gens), seconds, flops[size], comps[p], peak))
            print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    for p in paths:
        mine = [r for r in rows if r["path"] == p]
        rows.append(build_row(p, "all", sum(r["generations"] for r in mine),
                              sum(r["seconds"] for r in mine), sum(flops.values()), comps[p],
                              peak))
    return rows, latents


def build_row(path, size, generations, seconds, flop, comps, peak) -> dict:
    achieved = flop / seconds / 1e12
    dtype = "bf16" if comps.autocast else "fp32"
    return {"path": path, "size": size, "generations": generations, "seconds": round(seconds, 2),
            "unet_tflop": round(flop / 1e12, 3), "tflops": round(achieved, 4),
            "fraction_of_peak": share(achieved, peak[dtype] if peak else None),
            "peak_dtype": dtype}


def character_class(count: int) -> str:
    return CLASSES[min(count, 2)]


def part_eval(model_json, spec, paths, seeds, sizes) -> tuple[list[dict], dict]:
    import torch

    from pipeline import decode, detector, intervals, measure, sampling
    from pipeline.spec import Generation

    paths = [paths[0], paths[-1]]  # today's and the new one
    comps = {p: load(model_json, p) for p in paths}
    vae = comps[paths[0]].vae  # every path decodes with the same fp32 VAE
    ref = measure.reference(spec.prompts)
    rows, timing = [], {}
    for size in sizes:
        e = spec.evaluation  # its generations, at this size
        gens = [Generation(e["prompts"][i % len(e["prompts"])], e["seed_start"] + i, size, size)
                for i in range(seeds)]
        found = {}
        for p in paths:
            start = time.perf_counter()
            made = {}
            sampling.sample_generations(comps[p], spec, gens, "auto",
                                        lambda chunk, zs: made.update(zip(chunk, zs)))
            zs = [made[g] for g in gens]
            timing[(p, size)] = round(time.perf_counter() - start, 2)
            with torch.no_grad():
                found[p] = [detector.analyse(decode.to_pil(decode.vae(z[None], vae)[0]), ref)
                            for z in zs]
        a, b = (found[p] for p in paths)
        ca = [character_class(r["characters"]) for r in a]
        cb = [character_class(r["characters"]) for r in b]
        two = intervals.paired_share([c == "two or more" for c in ca],
                                     [c == "two or more" for c in cb])
        one = intervals.paired_share([c == "one" for c in ca], [c == "one" for c in cb])
        err, err_ci = intervals.paired_bootstrap_difference([r["colour_error"] for r in a],
                                                            [r["colour_error"] for r in b])
        row = {"size": size, "generations": len(gens),
               **{f"seconds_{p}": timing[(p, size)] for p in paths},
               "class_agreement": round(sum(x == y for x, y in zip(ca, cb)) / len(ca), 4),
               "changed": [f"{g.id}: {x} -> {y}" for g, x, y in zip(gens, ca, cb) if x != y],
               **{f"two_plus_{k}": v for k, v in two.items() if k != "n"},
               **{f"exactly_one_{k}": v for k, v in one.items() if k != "n"},
               "colour_error_first": round(float(sum(r["colour_error"] for r in a) / len(a)), 4),
               "colour_error_difference": round(err, 4),
               "colour_error_difference_ci": [round(v, 4) for v in err_ci]}
        rows.append(row)
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return rows, timing


def part_approx(model_json, spec, paths, latents) -> list[dict]:
    import torch

    from pipeline import approx_decoder as ad, decode

    vae = load(model_json, paths[0]).vae
    factor = load(model_json, paths[0]).info["geometry"]["vae_factor"]
    rows = []
    for p in (paths[0], paths[-1]):
        def pairs(gens):
            zs = torch.stack([latents[p][g] for g in gens])
            return zs, ad.downsample_targets(torch.cat([decode.vae(z[None], vae) for z in zs]),
                                             factor)
        z_train, y_train = pairs(spec.approx_train)
        z_held, y_held = pairs(spec.approx_heldout)
        cfg = spec.approx
        net, _ = ad.distil(z_train, y_train, hidden=cfg["hidden"], epochs=cfg["epochs"],
                           lr=cfg["lr"], seed=cfg["seed"], upsample=factor)
        with torch.no_grad():
            rows.append({"path": p, "psnr_heldout_db": round(ad.psnr(net(z_held), y_held), 3),
                         "psnr_train_db": round(ad.psnr(net(z_train), y_train), 3)})
        print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--paths", default=f"none,{STEP},default",
                    help="speedups= values: today's path first, the new one last (`build` "
                         "times each; `eval` and `approx` compare the first and the last)")
    ap.add_argument("--sizes", default="", help="sizes for `calls` (default: the build's)")
    ap.add_argument("--batches", default="1,4", help="generations per UNet call for `calls`")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--compile", default="", help="sizes at which `calls` also times "
                    "torch.compile (a minute or more of compiling each), e.g. 512,768")
    ap.add_argument("--eval-seeds", type=int, default=32)
    ap.add_argument("--eval-sizes", default="512,768")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown part {', '.join(sorted(unknown))}; known: {', '.join(PARTS)}")
    args.batches = [int(b) for b in args.batches.split(",")]
    paths = args.paths.split(",")
    os.chdir(ROOT)  # the shipped preview model is found relative to the project
    import tempfile

    import torch

    from pipeline import model, speedups, spec as specmod

    spec = specmod.load(ROOT / "figures.toml")
    model_json = str(tempfile.mkdtemp() + "/model.json")
    info = model.prepare(model.PREVIEW, model_json)
    geometry = info["geometry"]
    context = {"model": info["id"], "threads": torch.get_num_threads(),
               "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "paths": {p: list(speedups.parse(p, "cpu")) for p in paths}}
    print(f"# {info['id']} on {context['threads']} threads ({context['cpu_capability']}), "
          f"torch {torch.__version__}; paths {context['paths']}")
    peak = None
    if "peak" in parts or "calls" in parts or "build" in parts:
        peak = {"fp32": round(matmul_peak(torch.float32), 4),
                "bf16": round(matmul_peak(torch.bfloat16), 4)}
        context["matmul_peak_tflops"] = peak
        print(f"matmul peak: fp32 {peak['fp32']} TFLOP/s, bf16 {peak['bf16']} TFLOP/s")
    if "calls" in parts:
        sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
                 else sorted({g.width for g in spec.all_generations()}
                             | set(w for w, _ in spec.evaluation["sizes"])))
        rows = part_calls(model_json, spec, geometry, sizes, peak, args)
        write_results(args.out, "cpu_path-calls-preview-cpu", context, rows)
    if "peak" in parts:
        write_results(args.out, "cpu_path-peak-cpu", context,
                      [{"dtype": k, "matmul_tflops": v} for k, v in peak.items()])
    latents = None
    if "build" in parts or "approx" in parts:
        rows, latents = part_build(model_json, spec, paths, peak)
        total = {r["path"]: r["seconds"] for r in rows if r["size"] == "all"}
        context_b = {**context, "speedup": {p: round(total[paths[0]] / total[p], 3)
                                            for p in paths}}
        print(f"default build's sampling: {total}, {context_b['speedup']}x")
        if "build" in parts:
            write_results(args.out, "cpu_path-build-preview-cpu", context_b, rows)
    if "approx" in parts:
        rows = part_approx(model_json, spec, paths, latents)
        write_results(args.out, "cpu_path-approx-preview-cpu", context, rows)
    if "eval" in parts:
        rows, timing = part_eval(model_json, spec, paths, args.eval_seeds,
                                 [int(x) for x in args.eval_sizes.split(",")])
        spent = {p: round(sum(v for (q, _), v in timing.items() if q == p), 2)
                 for p in (paths[0], paths[-1])}
        context_e = {**context, "seeds": args.eval_seeds, "seconds": spent,
                     "speedup": round(spent[paths[0]] / spent[paths[-1]], 3)}
        print(f"evaluation set's sampling: {spent}, {context_e['speedup']}x")
        write_results(args.out, "cpu_path-eval-preview-cpu", context_e, rows)


if __name__ == "__main__":
    main()
