"""What the VAE decode costs on the CPU, by memory layout and thread layout (not a test; prints
figures).

    python benchmarks/vae_decode.py                 # the article's decode sizes, preview model
    python benchmarks/vae_decode.py --tag avx2      # results named for another machine kind

The build decodes every figure's latents with the VAE (pipeline/decode.py), one image at a time on
every thread, the decoder in the layout it was loaded in (contiguous NCHW). This measures, side
by side in one run and interleaved within each of --repeats rounds, seconds per decoded image at
each size for:
  contiguous      today's decode: NCHW, one image at a time on all threads;
  channels_last   the decoder and its input in NHWC (oneDNN's preferred layout), same threads;
  channels_last/workers  NHWC, one thread per decode and one decode per core at once (as the
                  sampler's cpu_workers run generations): seconds per image of throughput.
It also says what each changes in the bytes: the 8-bit images decoded the other way from the same
latents (real ones from --latents where it holds one of that size, else seeded noise latents),
as the largest difference in levels and the share of pixels that differ; and what the default
build's decodes (figures.toml's VAE decodes, counted per size) would take under each.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, write_results

CONFIGS = ("contiguous", "channels_last", "channels_last/workers")


def latents_for(size: int, directory: Path, geometry: dict, n: int):
    """n latents of a size: real ones from `directory` (the build's cache) where it has them, the
    rest seeded noise of the latent shape. Returns (latents, how many were real)."""
    import torch

    from pipeline.sampling import load_latents

    real = sorted(directory.glob(f"*-{size}x{size}-usual.safetensors"))[:n] if directory.is_dir() else []
    out = [load_latents(p)[0] for p in real]
    f, c = geometry["vae_factor"], geometry["latent_channels"]
    g = torch.Generator("cpu").manual_seed(size)
    while len(out) < n:
        out.append(torch.randn((c, size // f, size // f), generator=g) * 4)
    return out, len(real)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200,256,512,768")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latents", default=str(ROOT / "build" / "latents"),
                    help="the build's latent cache, for real latents (seeded noise where it has none)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--tag", default="", help="appended to the results' name (vae_decode-preview-cpu-TAG)")
    args = ap.parse_args()
    import copy

    import numpy as np
    import torch

    from pipeline import decode, model, spec as specmod

    workers = os.cpu_count() or 1
    threads = torch.get_num_threads()
    tmp = Path(tempfile.mkdtemp())
    model.prepare(str(ROOT / model.PREVIEW_DIR), tmp / "model.json")
    comps = model.load(str(tmp / "model.json"), "cpu", "none")
    plain = comps.vae
    nhwc = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    spec = specmod.load(ROOT / "figures.toml")
    in_build = {}
    for im in spec.decodes():
        if im.decoder == "vae":
            in_build[im.gen.width] = in_build.get(im.gen.width, 0) + 1

    def one(z, net, n_threads):
        torch.set_num_threads(n_threads)
        x = z[None] if net is plain else z[None].contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return decode.vae(x, net)

    def timed(config, zs):
        """Seconds per image for decoding `zs` (one per worker for the workers)."""
        t = time.perf_counter()
        if config == "channels_last/workers":
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda z: one(z, nhwc, 1), zs))
        else:
            for z in zs:
                one(z, plain if config == "contiguous" else nhwc, threads)
        dt = (time.perf_counter() - t) / len(zs)
        torch.set_num_threads(threads)
        return dt

    def image(z, net, n_threads):
        out = np.asarray(decode.to_pil(one(z, net, n_threads)[0])).astype(np.int16)
        torch.set_num_threads(threads)
        return out

    rows = []
    print(f"{workers} cores, {threads} threads; seconds per decoded image")
    print(f"{'size':>5s} {'config':24s} {'s/image':>8s} {'vs today':>8s} {'max diff':>8s} "
          f"{'px differ':>9s} {'build s':>8s}")
    for size in [int(s) for s in args.sizes.split(",")]:
        zs, real = latents_for(size, Path(args.latents), comps.info["geometry"], workers)
        timed("contiguous", zs[:1])  # warm-up: oneDNN primitives for this shape
        timed("channels_last", zs[:1])
        times = {c: [] for c in CONFIGS}
        for _ in range(args.repeats):
            for config in CONFIGS:
                times[config].append(timed(config, zs))
        base_img = image(zs[0], plain, threads)
        other = {"contiguous": base_img, "channels_last": image(zs[0], nhwc, threads),
                 "channels_last/workers": image(zs[0], nhwc, 1)}
        base = statistics.median(times["contiguous"])
        for config in CONFIGS:
            sec = statistics.median(times[config])
            diff = np.abs(other[config] - base_img)
            row = {"size": size, "config": config, "seconds_per_image": round(sec, 4),
                   "vs_contiguous": round(base / sec, 3), "max_level_difference": int(diff.max()),
                   "share_of_pixels_differing": round(float((diff > 0).any(-1).mean()), 6),
                   "real_latents": real, "decodes_in_default_build": in_build.get(size, 0),
                   "seconds_in_default_build": round(sec * in_build.get(size, 0), 2)}
            rows.append(row)
            print(f"{size:5d} {config:24s} {sec:8.3f} {row['vs_contiguous']:8.2f} "
                  f"{row['max_level_difference']:8d} {row['share_of_pixels_differing']:9.5f} "
                  f"{row['seconds_in_default_build']:8.2f}")
    totals = {c: round(sum(r["seconds_in_default_build"] for r in rows if r["config"] == c), 2)
              for c in CONFIGS}
    print("the default build's VAE decodes: " + ", ".join(f"{c} {s} s" for c, s in totals.items()))
    context = {"workers": workers, "threads": threads, "repeats": args.repeats,
               "default_build_decode_seconds": totals,
               "note": "pipeline/decode.py is part of the frozen evaluation's key: a change to the "
                       "decoder's layout is adopted together with a refreeze"}
    path = write_results(args.out, "vae_decode-preview-cpu", context, rows, tag=args.tag)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
