"""How the shipped miniature was trained, as a results file the README can cite (prints figures).

    .venv/bin/python benchmarks/training_record.py        # reads models/preview/training.json
    .venv/bin/python benchmarks/training_record.py --model build/repro/model --tag repro \
        --compare models/preview      # a from-scratch rerun: are its weights the shipped bytes?

`pipeline/train.py` writes `training.json` beside the weights it saves: settings, device, wall
time and both loss curves. This copies the figures that matter into
`benchmarks/results/train_miniature-<device kind>.json` (the loss curves as its rows, and CSV),
so the README quotes a file under benchmarks/results/ like every other number it states.
With `--compare`, every file listed in that model's SHA256SUMS (all but training.json, whose
times differ by nature) is hashed in `--model` too, and the record says which match.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import ROOT, write_results


def compare(model: Path, reference: Path) -> dict:
    """Each file of `reference`'s SHA256SUMS (training.json aside) -> its recorded sha256 if
    `model` holds the same bytes, else None."""
    from pipeline.files import sha256_file
    from pipeline.model import PREVIEW_SUMS, read_sums

    if not (reference / PREVIEW_SUMS).is_file():
        raise SystemExit(f"{reference / PREVIEW_SUMS} is missing: --compare needs a model saved "
                         f"by pipeline/train.py")
    return {name: digest if (model / name).is_file() and sha256_file(model / name) == digest
            else None for name, digest in read_sums(reference).items() if name != "training.json"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "preview"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--tag", default="", help="suffix for a model that is not the shipped one")
    ap.add_argument("--compare", default=None,
                    help="a model directory whose SHA256SUMS the weights are checked against")
    args = ap.parse_args()
    record = json.loads((Path(args.model) / "training.json").read_text())
    if not record.get("finished"):
        raise SystemExit(f"{args.model}/training.json records an unfinished run; finish it first")
    s = record["settings"]
    kind = "cuda" if record["device"].startswith("cuda") else "cpu"
    context = {"what": "training the preview miniature (pipeline/train.py)",
               "trained_on": record["device"], "trained_with_torch": record["torch"],
               "wall_seconds": record["wall_seconds"],  # the last invocation's
               "wall_hours": round(record["wall_seconds"] / 3600, 2),
               "resumed_from": record.get("resumed_from", []),
               # every invocation's, where the checkpoints recorded it (None: they did not)
               "total_seconds": record.get("total_seconds"),
               "render_and_encode_seconds": record["render_and_encode_seconds"],
               "stage_seconds": record.get("stage_seconds"),  # None: an older record
               "captions": s.get("captions", "fixed"), "tokenizer": s.get("tokenizer", "bytes"),
               "distinct_captions": record.get("distinct_captions",
                                               len(record.get("captions", []))),
               "vae_steps": s["vae_steps"], "vae_batch": s["vae_batch"], "vae_crop": s["vae_crop"],
               "colour_weight": s.get("colour_weight", 0.0),
               "centre_latents": s.get("centre_latents", False),
               "min_snr_gamma": s.get("min_snr_gamma", 0.0),
               "encode_bf16": s.get("encode_bf16", False),
               "attention_heads": s.get("attention_heads", 0),  # 0: MINI's 4
               "unet_steps": record["unet_steps_done"], "unet_batch": s["unet_batch"],
               "unet_lr": s["unet_lr"], "images": s["images"],
               "final_loss": record["final_loss"], "vae_final_mse": record["vae_final_mse"]}
    if args.compare:
        same = compare(Path(args.model), Path(args.compare))
        context["compared_with"] = str(Path(args.compare))
        context["same_bytes"] = same
        context["all_same_bytes"] = None not in same.values()
    rows = ([{"stage": "vae", "step": a, "loss": b} for a, b in record["vae_curve"]]
            + [{"stage": "unet", "step": a, "loss": b} for a, b in record["unet_curve"]])
    path = write_results(args.out, f"train_miniature-{kind}", context, rows, args.tag)
    print(f"trained on {record['device']} in {record['wall_seconds'] / 3600:.2f} h "
          f"({record['render_and_encode_seconds']:.0f} s rendering and encoding): "
          f"{s['vae_steps']} VAE steps of {s['vae_batch']} x {s['vae_crop']} px, "
          f"{record['unet_steps_done']} UNet steps of {s['unet_batch']}; final loss "
          f"{record['final_loss']}, VAE MSE {record['vae_final_mse']} -> {path.name}")
    if args.compare:
        differ = [name for name, digest in context["same_bytes"].items() if digest is None]
        print(f"compared with {args.compare}: "
              + ("every file the same bytes" if not differ else f"differ: {', '.join(differ)}"))


if __name__ == "__main__":
    main()
