"""The frozen evaluation (pipeline/freeze.py): a frozen file is used only while its key matches,
never silently when it is missing, corrupt or made with other inputs; and the committed one
holds records that a fresh computation repeats exactly."""
import json
import shutil
from pathlib import Path

import pytest

from pipeline import freeze, geometry, model, speedups, spec as specmod

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def spec():
    return specmod.load(ROOT / "figures.toml")


@pytest.fixture()
def geom():
    return geometry.load(ROOT / model.PREVIEW_DIR)


def planted(spec, geom, tmp_path, seeds=2) -> Path:
    """A frozen evaluation of `seeds` planted records, saved through freeze.save."""
    from PIL import Image

    cells = spec.evaluation_cells(seeds, geom)
    records = {}
    for gens in cells.values():
        for g in gens:
            records[g.id] = {"prompt": g.prompt, "seed": g.seed, "width": g.width,
                             "height": g.height, "variant": g.variant,
                             "characters": g.seed % 3, "eyes": [2] * (g.seed % 3),
                             "class": ["none", "one", "duplicated"][g.seed % 3],
                             "saturation": 0.25, "contrast": 0.2,
                             "clipped": 0.0, "colour_error": 1.5, "detector": 2}
    images = tmp_path / "images"
    images.mkdir()
    sheets = sorted({gens[0].sheet_file for gens in cells.values()})
    for i, name in enumerate(sheets):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(images / name)
    path = tmp_path / "frozen" / "evaluation.json"
    names = speedups.parse("default", "cpu")
    freeze.save(spec, "cpu", names, ROOT / model.PREVIEW_DIR, seeds, records, images, sheets,
                path=path)
    return path


def load(spec, geom, path, **kw):
    args = {"device": "cpu", "speedups": speedups.parse("default", "cpu")} | kw
    return freeze.load(spec, args["device"], args["speedups"], ROOT / model.PREVIEW_DIR, geom,
                       path=path)


def test_a_saved_evaluation_loads_while_its_inputs_are_unchanged(spec, geom, tmp_path):
    path = planted(spec, geom, tmp_path)
    frozen, why = load(spec, geom, path)
    assert why == "" and frozen["seeds"] == 2 and frozen["command"] == "doit eval_seeds=2"
    assert set(frozen["key_inputs"]) == {"model", "sampling_code", "evaluation_code",
                                         "evaluation", "sampling", "prompts", "torch",
                                         "diffusers", "device", "speedups", "variants"}
    assert len(frozen["sheets"]) == len({g[0].sheet_file for g in
                                         spec.evaluation_cells(2, geom).values()})


def test_a_missing_frozen_file_says_so_and_how_to_make_one(spec, geom, tmp_path):
    frozen, why = load(spec, geom, tmp_path / "nothing.json")
    assert frozen is None and "no frozen evaluation" in why and "doit eval_seeds=32" in why


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_text(p.read_text()[:200]), "is corrupt"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "records": {}})),
     "no record of"),
    (lambda p: next((p.parent / "sheets").glob("*.png")).unlink(), "is missing"),
    (lambda p: next((p.parent / "sheets").glob("*.png")).write_bytes(b"not a png"),
     "does not match its sha256"),
])
def test_a_damaged_frozen_evaluation_is_refused_in_one_line(spec, geom, tmp_path, damage,
                                                           message):
    path = planted(spec, geom, tmp_path)
    damage(path)
    frozen, why = load(spec, geom, path)
    assert frozen is None and message in why and "computing instead" in why
    assert "\n" not in why


@pytest.mark.parametrize("change, named", [
    (dict(device="cuda"), "device"),
    (dict(speedups=()), "speedups"),
])
def test_another_device_or_path_does_not_use_it_and_names_what_differs(spec, geom, tmp_path,
                                                                      change, named):
    path = planted(spec, geom, tmp_path)
    frozen, why = load(spec, geom, path, **change)
    assert frozen is None and f"computed with another {named};" in why


def test_other_code_or_settings_do_not_use_it(spec, geom, tmp_path, monkeypatch):
    path = planted(spec, geom, tmp_path)
    data = json.loads(path.read_text())
    data["key_inputs"]["torch"] = "2.0.0"  # as if frozen under another torch
    data["key"] = freeze.key(data["key_inputs"])
    path.write_text(json.dumps(data))
    frozen, why = load(spec, geom, path)
    assert frozen is None and "another torch" in why
    code = tmp_path / "code"
    shutil.copytree(ROOT / "pipeline", code)
    (code / "detector.py").write_text((code / "detector.py").read_text() + "\nX = 1\n")
    monkeypatch.setattr(freeze, "PIPELINE", code)
    again = tmp_path / "again"
    again.mkdir()
    path = planted(spec, geom, again)  # frozen by a detector that has since changed
    monkeypatch.setattr(freeze, "PIPELINE", ROOT / "pipeline")
    frozen, why = load(spec, geom, path)
    assert frozen is None and "another evaluation_code" in why


def test_device_type_resolves_without_torch():
    assert freeze.device_type("cpu") == "cpu"
    assert freeze.device_type("cuda:1") == "cuda"
    assert freeze.device_type("auto") in ("cpu", "cuda")


def test_the_committed_frozen_evaluation_is_current_and_a_fresh_computation_repeats_it(
        spec, geom, tmp_path):
    """The frozen records the default page shows must be today's: their key matches this code,
    model and software on the CPU path, and generations recomputed from scratch here (sampled,
    decoded, analysed) give the very same records."""
    import torch

    from pipeline import decode, detector, evaluate, measure, sampling

    path = ROOT / freeze.FROZEN
    assert path.exists(), f"{freeze.FROZEN} is missing: run `doit eval_seeds=32` and commit frozen/"
    frozen, why = freeze.load(spec, "cpu", speedups.parse("default", "cpu"),
                              ROOT / model.PREVIEW_DIR, geom, path=ROOT / freeze.FROZEN)
    assert why == "", why
    cells = spec.evaluation_cells(frozen["seeds"], geom)
    chosen = [cells[((200, 200), "usual")][1], cells[((512, 512), "usual")][0],
              cells[((640, 640), "logit-scale")][3]]
    model.prepare(str(ROOT / model.PREVIEW_DIR), tmp_path / "model.json")
    comps = model.load(str(tmp_path / "model.json"), "cpu", "default")
    made = {}
    sampling.sample_generations(comps, spec, chosen, "auto",
                                lambda chunk, zs: made.update(zip(chunk, zs)))
    ref = measure.reference(spec.prompts)
    for gen in chosen:
        with torch.no_grad():
            image = decode.to_pil(decode.vae(made[gen][None], comps.vae)[0])
        assert evaluate.record(gen, detector.analyse(image, ref)) == frozen["records"][gen.id], (
            f"{gen.id} recomputed differs from its frozen record on this CPU ({_cpu()}); a CPU "
            "of another kind may compute bf16 differently, and the key does not hold the CPU kind")


def _cpu() -> str:
    """This machine's CPU model and bf16 instruction sets, for a failure message."""
    from pathlib import Path

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("model name")), "unknown")
    flags = sorted({f for f in text.split() if f in ("amx_bf16", "avx512_bf16")})
    return f"{model}; {', '.join(flags) or 'no bf16 instructions'}"
