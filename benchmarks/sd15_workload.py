"""The article's core workload, the plain diffusers way against this pipeline (prints figures).

    python benchmarks/sd15_workload.py                                  # GPU, SD 1.5 architecture
    python benchmarks/sd15_workload.py --shape preview --device cpu --per-size 2   # CPU harness

Workload: `--per-size` generations (8 by default) at each of 256², 512², 768², 22 steps of
DPM-Solver++ (2M) on the Karras schedule, CFG 7.5 against the empty prompt, each decoded by the
VAE. The model is built offline with random weights (shape "sd15" is SD 1.5's exact architecture,
so its timings are the real model's) and loaded once through pipeline.model (fp16 on CUDA).

(a) plain: diffusers' StableDiffusionPipeline on freshly loaded modules (fp16, nothing of ours),
    DPMSolverMultistepScheduler with Karras sigmas, one image per call.
(a') batched: the same pipeline given the same batches as ours (lists of prompts and generators).
Each configuration runs --rounds times, the order alternated; each figure is its best round.
(b) ours: pipeline.sampling.sample over batches of one size (CFG pair and seeds in one UNet
    batch, batch size from free GPU memory), then pipeline.decode.vae on the same batches.

Prints wall time per size and in total for both, the ratio a/b, the UNet FLOPs (counted with
torch's FlopCounterMode on one forward per size), achieved TFLOP/s on (b)'s UNet work, its
fraction of the device's dense fp16 peak, and peak memory per size; writes the same as JSON and
CSV under benchmarks/results/.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from common import ROOT, build_and_load, peak_tflops, share, sync, unet_flops, write_results

from pipeline import decode, sampling, spec as specmod

SEEDS = [86322125, 340323845, 436376137, 580263270, 715317074, 830333947, 1157730004,
         1289965640, 1385218415, 1542102181, 2106704619, 1234567890]


def workload(spec, sizes: list[int], per_size: int) -> dict[int, list]:
    prompts = sorted(spec.prompts)
    return {s: [specmod.Generation(prompts[i % len(prompts)], SEEDS[i % len(SEEDS)], s, s)
                for i in range(per_size)] for s in sizes}


def plain_pipeline(directory: Path, device: str):
    """diffusers' StableDiffusionPipeline on freshly loaded modules, as a user would set it up:
    fp16 on CUDA, default memory layout and attention processors, nothing of ours."""
    from diffusers import (AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextModel, CLIPTokenizer

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    kw = {"torch_dtype": dtype}
    scheduler = DPMSolverMultistepScheduler.from_pretrained(
        directory / "scheduler", algorithm_type="dpmsolver++", solver_order=2,
        use_karras_sigmas=True)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(directory / "vae", **kw),
        text_encoder=CLIPTextModel.from_pretrained(directory / "text_encoder", **kw),
        tokenizer=CLIPTokenizer.from_pretrained(directory / "tokenizer", model_max_length=77),
        unet=UNet2DConditionModel.from_pretrained(directory / "unet", **kw),
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def run_plain(pipe, device: str, spec, jobs: dict[int, list], batch: int) -> dict:
    """(a) batch=1: one image per call, as most scripts use the pipeline; (b) batch=N: the same
    batches as ours, given as lists of prompts and generators (the best plain configuration)."""
    s = spec.sampling
    out = {}
    pipe(spec.prompts["miko"], height=256, width=256, num_inference_steps=2,
         guidance_scale=s["guidance"], output_type="pt")  # warm-up
    for size, gens in jobs.items():
        reset_peak(device)
        sync(device)
        start = time.perf_counter()
        for i in range(0, len(gens), batch):
            chunk = gens[i:i + batch]
            pipe([spec.prompts[g.prompt] for g in chunk], height=size, width=size,
                 num_inference_steps=s["steps"], guidance_scale=s["guidance"],
                 negative_prompt=[s["negative_prompt"]] * len(chunk) if s["negative_prompt"]
                 else None, output_type="pt",
                 generator=[torch.Generator("cpu").manual_seed(g.seed) for g in chunk])
        sync(device)
        out[size] = {"seconds": time.perf_counter() - start, "peak_gib": peak_gib(device)}
    return out


def run_ours(comps, spec, jobs: dict[int, list], batch: str) -> dict:
    out = {}
    sampling.sample(comps, spec, jobs[min(jobs)][:1])  # warm-up
    for size, gens in jobs.items():
        reset_peak(comps.device)
        n = sampling.batch_size(comps, batch, gens)
        sync(comps.device)
        start = time.perf_counter()
        unet_s = 0.0
        for chunk in sampling.batches(gens, n):
            t = time.perf_counter()
            latents = sampling.sample(comps, spec, chunk)
            unet_s += time.perf_counter() - t  # sample() returns on the CPU: synchronised
            decode.vae(latents, comps.vae)
        sync(comps.device)
        out[size] = {"seconds": time.perf_counter() - start, "sampling_seconds": unet_s,
                     "batch": n, "peak_gib": peak_gib(comps.device)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="sd15", choices=["preview", "sd15"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", default="256,512,768")
    ap.add_argument("--per-size", type=int, default=8)
    ap.add_argument("--batch", default="auto")
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    import diffusers

    spec = specmod.load(ROOT / "figures.toml")
    comps, directory, _ = build_and_load(args.shape, args.device)
    sizes = [int(s) for s in args.sizes.split(",")]
    jobs = workload(spec, sizes, args.per_size)
    device = (torch.cuda.get_device_name(comps.device) if comps.device.startswith("cuda")
              else f"cpu ({platform.processor() or platform.machine()}, "
                   f"{torch.get_num_threads()} threads)")
    flops = {s: unet_flops(comps.unet, comps.info["geometry"], s) for s in sizes}
    steps = spec.sampling["steps"]
    batch = {s: sampling.batch_size(comps, args.batch, jobs[s]) for s in sizes}
    runs = {"ours": lambda: run_ours(comps, spec, jobs, args.batch)}
    if not args.skip_plain:
        pipe = plain_pipeline(directory, comps.device)
        runs["plain"] = lambda: run_plain(pipe, comps.device, spec, jobs, 1)
        runs["batched"] = lambda: run_plain(pipe, comps.device, spec, jobs, max(batch.values()))
    results: dict[str, list] = {k: [] for k in runs}
    order = list(runs)

    def save(table: bool):
        """The figures from the rounds so far, written (after every round: a run cut off at its
        limit keeps the rounds it finished); `table`: print them too."""
        best = {k: {s: min(v, key=lambda res: res[s]["seconds"])[s] for s in sizes}
                for k, v in results.items()}
        ours, plain, batched = best["ours"], best.get("plain"), best.get("batched")
        peak = peak_tflops(device)
        rows = []
        for s in sizes:
            work = flops[s] * 2 * steps * len(jobs[s])  # CFG pair, every step, every generation
            achieved = work / ours[s]["sampling_seconds"] / 1e12  # TFLOP/s
            rows.append({"size": s, "generations": len(jobs[s]),
                         "plain_s": plain and round(plain[s]["seconds"], 3),
                         "ours_s": round(ours[s]["seconds"], 3),
                         "batched_s": batched and round(batched[s]["seconds"], 3),
                         "ratio": plain and round(plain[s]["seconds"] / ours[s]["seconds"], 2),
                         "ratio_batched": batched and round(batched[s]["seconds"] / ours[s]["seconds"], 2),
                         "ours_sampling_s": round(ours[s]["sampling_seconds"], 3),
                         "batch": ours[s]["batch"],
                         "unet_tflop_per_sample": float(f"{flops[s] / 1e12:.4g}"),
                         "unet_tflops_achieved": round(achieved, 3),
                         "fraction_of_peak": share(achieved, peak),
                         "plain_peak_gib": plain and plain[s]["peak_gib"] and round(plain[s]["peak_gib"], 2),
                         "ours_peak_gib": ours[s]["peak_gib"] and round(ours[s]["peak_gib"], 2)})
        total = totals(rows, peak)
        result = {"device": device, "peak_tflops_fp16_dense": peak, "shape": args.shape,
                  "dtype": str(comps.dtype).removeprefix("torch."), "torch": torch.__version__,
                  "diffusers": diffusers.__version__, "steps": steps, "guidance": spec.sampling["guidance"],
                  "per_size": args.per_size, "rows": rows, "total": total}
        if table:
            print_table(result, sum(len(j) for j in jobs.values()))
        tag = f"{args.shape}-{'cuda' if comps.device.startswith('cuda') else 'cpu'}"
        write_results(args.out, f"sd15_workload-{tag}", {k: v for k, v in result.items() if k != "rows"},
                      rows)

    for r in range(args.rounds):  # order alternated; each figure is the best of its rounds
        for name in (order if r % 2 == 0 else order[::-1]):
            results[name].append(runs[name]())
            print(f"round {r + 1}: {name} {sum(v['seconds'] for v in results[name][-1].values()):.2f} s",
                  flush=True)
        save(table=r == args.rounds - 1)


def print_table(result: dict, generations: int) -> None:
    """The workload's figures as a table, a row per size and the total."""
    cols = ["size", "generations", "plain_s", "batched_s", "ours_s", "ratio", "ratio_batched",
            "batch", "unet_tflops_achieved", "fraction_of_peak", "plain_peak_gib", "ours_peak_gib"]
    print(f"# {result['shape']} on {result['device']}, {result['dtype']}, torch {result['torch']}, "
          f"diffusers {result['diffusers']}; {result['steps']} steps, CFG {result['guidance']}")
    print(" ".join(f"{c:>12s}" for c in cols))
    for r in result["rows"]:
        print(" ".join(f"{'-' if r[c] is None else r[c]!s:>12s}" for c in cols))
    total = result["total"]
    print(f"{'total':>12s} {generations!s:>12s} "
          f"{total['plain_s'] or '-'!s:>12s} {total['batched_s'] or '-'!s:>12s} "
          f"{total['ours_s']!s:>12s} {total['ratio'] or '-'!s:>12s} "
          f"{total['ratio_batched'] or '-'!s:>12s} {'':>12s} {total['unet_tflops_achieved']!s:>12s}"
          f" {total['fraction_of_peak'] or '-'!s:>12s}")


def totals(rows: list[dict], peak: float | None) -> dict:
    """The whole workload's figures from the per-size rows: times summed, ratios of the sums, and
    the UNet's achieved TFLOP/s as total work (rate x time per size) over total sampling time."""
    def total(col):
        return None if any(r[col] in (None, "") for r in rows) else round(
            sum(float(r[col]) for r in rows), 3)

    out = {c: total(c) for c in ("plain_s", "batched_s", "ours_s", "ours_sampling_s")}
    out["ratio"] = out["plain_s"] and round(out["plain_s"] / out["ours_s"], 2)
    out["ratio_batched"] = out["batched_s"] and round(out["batched_s"] / out["ours_s"], 2)
    work = sum(float(r["unet_tflops_achieved"]) * float(r["ours_sampling_s"]) for r in rows)
    out["unet_tflops_achieved"] = round(work / out["ours_sampling_s"], 3)
    out["fraction_of_peak"] = share(out["unet_tflops_achieved"], peak)
    return out


def totals_from_csv(csv_path: str, device_name: str) -> None:
    """Write <csv>-totals.json beside a committed per-size CSV (for a run whose JSON was lost)."""
    import csv
    import json
    from pathlib import Path

    rows = list(csv.DictReader(open(csv_path)))
    out = {"source": Path(csv_path).name, "device": device_name,
           "peak_tflops_fp16_dense": peak_tflops(device_name),
           "total": totals(rows, peak_tflops(device_name))}
    target = Path(csv_path).with_name(Path(csv_path).stem + "-totals.json")
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["total"]))


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--totals-from"]:  # --totals-from <csv> <device name>
        totals_from_csv(sys.argv[2], sys.argv[3])
    else:
        main()
