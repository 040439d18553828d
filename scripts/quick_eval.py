"""Sample a trained model at several sizes and run the detector over the decodes (prints figures).

    python scripts/quick_eval.py MODEL_DIR [--sizes 256,512,768] [--seeds 16] [--device auto] [--out DIR]

A quick look while training; the article's own measurement is the evaluation stage.
"""
from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--sizes", default="200,256,512,768")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import numpy as np
    from PIL import Image

    from pipeline import decode, detector, intervals, model, portraits, sampling
    from pipeline import spec as specmod

    spec = specmod.load(ROOT / "figures.toml")
    directory = Path(args.model)
    mj = Path("/tmp/quick_eval_model.json")
    model.prepare(str(directory), mj)
    comps = model.load(str(mj), args.device)
    with open(ROOT / "figures.toml", "rb") as fh:
        prompts = tomllib.load(fh)["prompts"]
    caps = portraits.training_captions(prompts)
    ref = detector.reference([portraits.dataset_item(caps, i, 99)[1] for i in range(64)])
    for size in (int(s) for s in args.sizes.split(",")):
        gens = [specmod.Generation(p, 10_000 + i, size, size) for i in range(args.seeds)
                for p in sorted(prompts)]
        images = []
        for i in range(0, len(gens), args.batch):
            lat = sampling.sample(comps, spec, gens[i:i + args.batch])
            images += [np.asarray(decode.to_pil(x)) for x in decode.vae(lat, comps.vae)]
        res = [detector.analyse(im, ref) for im in images]
        s = intervals.summarise(res)  # the evaluation's own summary
        print(f"{size}: n={s['n']} exactly-one {s['exactly_one']:.2f} two-plus {s['two_plus']:.2f}"
              f" counts {s['histogram']} colour_error {s['colour_error']:.2f}"
              f" sat {s['saturation']:.3f} contrast {s['contrast']:.3f}"
              f" clipped {s['clipped']:.3f}", flush=True)
        if args.out:
            k = 8
            thumbs = [Image.fromarray(im).resize((128, 128)) for im in images[:32]]
            sheet = Image.new("RGB", (128 * k, 128 * ((len(thumbs) + k - 1) // k)))
            for j, t in enumerate(thumbs):
                sheet.paste(t, ((j % k) * 128, (j // k) * 128))
            Path(args.out).mkdir(parents=True, exist_ok=True)
            sheet.save(Path(args.out) / f"sheet-{size}.png")


if __name__ == "__main__":
    main()
