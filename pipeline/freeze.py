"""The frozen evaluation: a full run's per-generation records, committed, and reused by a plain
`doit` while everything that decides them is unchanged (as Quarto's `freeze` reuses computed
output).

`doit eval_seeds=N` with N at least [evaluation] seeds computes the evaluation and writes
FROZEN (the records: prompt, seed, size, variant, character count, colour statistics, detector
version) and its contact sheets under SHEETS, keyed by the digest of `key_inputs`: the preview
model's SHA256SUMS, the code that samples, decodes and analyses, the [evaluation] and [sampling]
tables and the prompts, the versions of torch, diffusers, numpy and Pillow, the device type and
the UNet speed-ups. The frozen file also names the machine kind that computed it (`machine`): on
the CPU, bf16 kernels differ between kinds (AMX or AVX-512 BF16), so another kind recomputes the
same images only up to rounding, and the records say where they were made. The machine is not
part of the key: a build on another kind reuses the records, and the page names their machine.
Nor is the CPU default's bf16: on a CPU without bf16 instructions the default runs the UNet in
fp32 (speedups.CPU_WITHOUT_BF16), and such a build reuses records sampled under the default of a
kind with them, saying on the page that they were sampled in bf16 (`bf16_made`).
A plain `doit` then uses the frozen records when its own key matches, and says why not in one
line when it does not (no file, a corrupt file, or which input differs); it then computes the
default count instead. Pure Python: dodo.py calls `load` at load time.
"""
from __future__ import annotations

import datetime
import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .files import atomic_write, code_digest, read_json, sha256_file, write_json
from .machine import describe

FROZEN = Path("frozen/evaluation.json")
# Hand labels of generations in FROZEN, made by looking at their decodes (scripts/label_sheets.py),
# for the model they name (model_identity): evaluate.agreement checks the detector against them.
LABELS = Path("frozen/detector_labels.json")


def sheets_dir(path: Path = FROZEN) -> Path:
    """Where a frozen evaluation's contact sheets lie: beside it, in sheets/."""
    return Path(path).parent / "sheets"


SHEETS = sheets_dir()
PIPELINE = Path(__file__).parent
SAMPLING_PATH = ("sampling.py", "schedule.py", "attention.py", "topk_attention.py", "geometry.py",
                 "model.py", "speedups.py", "variants.py", "interventions.py", "redilation.py",
                 "feature_resize.py", "window_attention.py", "hires_fix.py")
EVALUATION_PATH = ("decode.py", "detector.py", "measure.py", "portraits.py")
RECORD_FIELDS = ("prompt", "seed", "width", "height", "variant", "characters", "eyes", "class",
                 "saturation",
                 "contrast", "clipped", "colour_error", "detector")


def device_type(device: str) -> str:
    """What `device=` resolves to, without importing torch: `auto` is CUDA where the NVIDIA
    driver is loaded (a CPU-only torch there computes instead of using a CPU freeze: safe)."""
    if device == "auto":
        return "cuda" if Path("/proc/driver/nvidia/version").exists() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def model_identity(model_dir: Path) -> str:
    """The model as the key and the hand labels name it: the sha256 of its SHA256SUMS."""
    return sha256_file(Path(model_dir) / "SHA256SUMS")


def key_inputs(spec, device: str, speedups: tuple[str, ...], model_dir: Path) -> dict:
    """Everything that decides the evaluation's records, by name (the key is their digest)."""
    evaluation = {k: v for k, v in spec.evaluation.items() if k != "default_seeds"}
    return {"model": model_identity(model_dir),
            "sampling_code": code_digest(PIPELINE, SAMPLING_PATH),
            "evaluation_code": code_digest(PIPELINE, EVALUATION_PATH),
            "evaluation": json.loads(json.dumps(evaluation)),
            "sampling": dict(spec.sampling),
            "variants": {v: spec.variants[v] for v in evaluated_variants(spec)},
            "prompts": {k: spec.prompts[k] for k in spec.evaluation["prompts"]},
            "torch": _version("torch"), "diffusers": _version("diffusers"),
            "numpy": _version("numpy"), "pillow": _version("pillow"),
            "device": device_type(device), "speedups": list(speedups)}


def machine(device: str) -> str:
    """The kind of machine that computes on `device`, in words (pipeline/machine.py)."""
    return describe(device if device.startswith("cuda") else device_type(device))


def evaluated_variants(spec) -> list[str]:
    """Every variant the evaluation measures, with the parts of combinations."""
    e = spec.evaluation
    names = {v for g in [e, *e.get("more", ()), *e.get("sweeps", ())] for v in g["variants"]}
    names |= {p for v in list(names) for p in spec.variants[v].get("parts", ())}
    return sorted(names)


def key(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


FIX = "`doit eval_seeds=32` computes and freezes it again"


def load(spec, device: str, speedups: tuple[str, ...], model_dir: Path, geometry: dict,
         path: Path = FROZEN) -> tuple[dict | None, str]:
    """(the frozen evaluation, "") when it can be used; (None, one line saying why not)."""
    if not path.exists():
        return None, f"no frozen evaluation ({path}); {FIX}"
    try:
        data = read_json(path)
        records, seeds, sheets = data["records"], int(data["seeds"]), data["sheets"]
        for gens in spec.evaluation_cells(seeds, geometry).values():
            for g in gens:
                if g.id not in records or set(RECORD_FIELDS) - set(records[g.id]):
                    raise ValueError(f"no record of {g.id}")
        for name, digest in sheets.items():
            if not (sheets_dir(path) / name).is_file():
                raise ValueError(f"its contact sheet {name} is missing")
            if sha256_file(sheets_dir(path) / name) != digest:
                raise ValueError(f"its contact sheet {name} does not match its sha256")
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, f"the frozen evaluation {path} is corrupt ({err}); computing instead; {FIX}"
    now = key_inputs(spec, device, speedups, model_dir)
    then = data.get("key_inputs", {})
    data["bf16_made"] = bf16_made(then, now)  # said on the page; not part of the file
    if data["bf16_made"]:
        now["speedups"] = then["speedups"]  # as the machine kind, the CPU's default is not keyed
    if key(now) != data.get("key"):
        differ = [k for k in now if now[k] != then.get(k)] or ["key"]
        hint = ""
        if differ == ["speedups"]:  # e.g. bf16 autocast, left out on a CPU without bf16
            named = "+".join(then["speedups"]) or "none"
            hint = f" (speedups={named}; `doit speedups={named}` reuses its records)"
        return None, (f"the frozen evaluation {path} was computed with another "
                      f"{', '.join(differ)}{hint}; computing instead; {FIX}")
    return data, ""


def bf16_made(then: dict, now: dict) -> bool:
    """Whether frozen records (key inputs `then`) were sampled with the CPU default of a kind with
    bf16 instructions and this build (`now`) runs the default of a CPU without them
    (speedups.CPU_WITHOUT_BF16: the same path with the UNet in fp32, bf16 being emulated and six
    times slower there). Such a build reuses the records, as a build on another CPU kind does,
    and the page says they were sampled in bf16: rounding moves single images at sizes the model
    was not trained for (benchmarks/evaluation_parity.py measures how many), so this CPU would
    count its own images of the same seeds a little differently."""
    from . import machine, speedups

    return (now["device"] == then.get("device") == "cpu" and not machine.bf16_flags()
            and tuple(now["speedups"]) == speedups.CPU_WITHOUT_BF16
            and tuple(then.get("speedups", ())) == speedups.DEFAULTS["cpu"])


def save(spec, device: str, speedups: tuple[str, ...], model_dir: Path, seeds: int,
         records: dict, images_dir: Path, sheet_names: list[str], path: Path = FROZEN) -> dict:
    """Freeze a full evaluation: its contact sheets first, then the records naming them (a run
    cut off between the two leaves a file whose sheets do not match: `load` refuses it)."""
    sheets = {}
    for name in sorted(set(sheet_names)):
        data = (Path(images_dir) / name).read_bytes()
        atomic_write(sheets_dir(path) / name, data)
        sheets[name] = hashlib.sha256(data).hexdigest()
    inputs = key_inputs(spec, device, speedups, model_dir)
    frozen = {"key": key(inputs), "key_inputs": inputs, "seeds": seeds,
              "date": datetime.date.today().isoformat(), "machine": machine(device),
              "command": f"doit eval_seeds={seeds}", "sheets": sheets,
              "records": {k: {f: r[f] for f in RECORD_FIELDS} for k, r in sorted(records.items())}}
    write_json(path, frozen)
    for old in sheets_dir(path).glob("*.png"):
        if old.name not in sheets:
            old.unlink()
    return frozen
