"""The frozen evaluation (pipeline/freeze.py): a frozen file is used only while its key matches,
never silently when it is missing, corrupt or made with other inputs; and the committed one
holds records that a fresh computation repeats: exactly on the machine kind that made them, up to
bf16 rounding on another."""
import json
import shutil
from pathlib import Path

import pytest

from pipeline import freeze, geometry, machine, model, speedups, spec as specmod

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def spec():
    return specmod.load(ROOT / "figures.toml")


@pytest.fixture()
def geom():
    return geometry.load(ROOT / model.PREVIEW_DIR)


def planted(spec, geom, tmp_path, seeds=2, names=None) -> Path:
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
    names = speedups.parse("default", "cpu") if names is None else names
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
                                         "diffusers", "numpy", "pillow", "device", "speedups",
                                         "variants"}
    assert frozen["machine"] == freeze.machine("cpu")
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


@pytest.mark.parametrize("flags, reused", [([], True), (["avx512_bf16"], False)])
def test_a_cpu_without_bf16_reuses_records_sampled_under_the_bf16_default(
        spec, geom, tmp_path, monkeypatch, flags, reused):
    """Where the CPU has no bf16 instructions its default is the fp32 path
    (speedups.CPU_WITHOUT_BF16), and it reuses records made under the default of a CPU with them,
    marked so that the page says so; on a CPU with them, asking for that path computes."""
    path = planted(spec, geom, tmp_path, names=speedups.DEFAULTS["cpu"])
    monkeypatch.setattr(machine, "bf16_flags", lambda fields=None: flags)
    frozen, why = load(spec, geom, path, speedups=speedups.CPU_WITHOUT_BF16)
    if reused:
        assert why == "" and frozen["bf16_made"] is True
        assert frozen["key_inputs"]["speedups"] == list(speedups.DEFAULTS["cpu"])
        for other in ((), ("channels_last",)):  # any other path on it still computes
            assert load(spec, geom, path, speedups=other)[0] is None
    else:
        assert frozen is None and "computed with another speedups" in why
    assert load(spec, geom, path, speedups=speedups.DEFAULTS["cpu"])[0]["bf16_made"] is False


@pytest.mark.parametrize("change, named", [
    (dict(device="cuda"), "device"),
    (dict(speedups=()), "speedups"),
])
def test_another_device_or_path_does_not_use_it_and_names_what_differs(spec, geom, tmp_path,
                                                                      change, named):
    path = planted(spec, geom, tmp_path)
    frozen, why = load(spec, geom, path, **change)
    assert frozen is None and f"computed with another {named}" in why and "\n" not in why
    if named == "speedups":  # e.g. a CPU without bf16: the line says how to reuse the records
        used = "+".join(speedups.parse("default", "cpu"))
        assert f"another speedups (speedups={used}; `doit speedups={used}` reuses" in why


def test_the_machine_is_named_with_its_bf16_instructions_or_their_absence(monkeypatch):
    monkeypatch.setattr(machine, "cpu_fields", lambda: {"model name": "Some CPU",
                                                        "flags": "fpu avx2 fma"})
    assert freeze.machine("cpu").endswith("; no bf16 instructions)")
    monkeypatch.setattr(machine, "cpu_fields", lambda: {"model name": "Some CPU",
                                                        "flags": "fpu avx512_bf16"})
    assert freeze.machine("cpu").endswith("; avx512_bf16)")


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


# How far a record recomputed on another CPU kind may be from the frozen one: bf16 kernels round
# differently (AMX against AVX-512 BF16), so its image differs by a few levels. Measured between
# an AMD EPYC (AVX-512 BF16) and an Intel Xeon with AMX on the three generations below: the
# statistics moved by at most 0.002, the colour error by at most 2%; the counts did not move.
ROUNDING = {"saturation": 0.02, "contrast": 0.02, "clipped": 0.005}
ROUNDING_COLOUR_ERROR = 0.10  # relative


def test_the_committed_frozen_evaluation_is_current_and_a_fresh_computation_repeats_it(
        spec, geom, tmp_path):
    """The frozen records the default page shows must be today's: their key matches this code,
    model and software on the CPU path, and generations recomputed from scratch here (sampled,
    decoded, analysed) give the very same records on the machine kind that froze them, and the
    same counts with statistics within bf16 rounding on another."""
    import torch

    from pipeline import decode, detector, evaluate, measure, sampling

    path = ROOT / freeze.FROZEN
    assert path.exists(), f"{freeze.FROZEN} is missing: run `doit eval_seeds=32` and commit frozen/"
    # the speed-ups it was frozen with: the CPU default has them where the CPU has bf16
    # instructions; elsewhere `doit speedups=...` names them (tested above)
    used = tuple(json.loads(path.read_text())["key_inputs"]["speedups"])
    assert used == speedups.DEFAULTS["cpu"], "freeze on a CPU with bf16 instructions"
    frozen, why = freeze.load(spec, "cpu", used, ROOT / model.PREVIEW_DIR, geom,
                              path=ROOT / freeze.FROZEN)
    assert why == "", why
    cells = spec.evaluation_cells(frozen["seeds"], geom)
    chosen = [cells[((200, 200), "usual")][1], cells[((512, 512), "usual")][0],
              cells[((640, 640), "logit-scale")][3]]
    model.prepare(str(ROOT / model.PREVIEW_DIR), tmp_path / "model.json")
    comps = model.load(str(tmp_path / "model.json"), "cpu", "+".join(used))
    made = {}
    sampling.sample_generations(comps, spec, chosen, "auto",
                                lambda chunk, zs: made.update(zip(chunk, zs)))
    ref = measure.reference(spec.prompts)
    here = freeze.machine("cpu")
    for gen in chosen:
        with torch.no_grad():
            image = decode.to_pil(decode.vae(made[gen][None], comps.vae)[0])
        now, then = evaluate.record(gen, detector.analyse(image, ref)), frozen["records"][gen.id]
        if frozen["machine"] == here:
            assert now == then, f"{gen.id} recomputed on {here}, the kind that froze it, differs"
            continue
        where = f"{gen.id} recomputed on {here}, frozen on {frozen['machine']}"
        assert {k: now[k] for k in ("characters", "eyes", "class")} == \
            {k: then[k] for k in ("characters", "eyes", "class")}, f"{where}: counts differ"
        for k, tolerance in ROUNDING.items():
            assert abs(now[k] - then[k]) <= tolerance, f"{where}: {k} {now[k]} vs {then[k]}"
        assert abs(now["colour_error"] - then["colour_error"]) <= \
            ROUNDING_COLOUR_ERROR * then["colour_error"], f"{where}: colour error differs"
        assert {k: now[k] for k in now if k not in (*ROUNDING, "colour_error")} == \
            {k: then[k] for k in now if k not in (*ROUNDING, "colour_error")}, where


def test_the_machine_kind_is_named_with_its_bf16_instructions():
    text = freeze.machine("cpu")
    assert text and "\n" not in text
    if Path("/proc/cpuinfo").exists():
        flags = Path("/proc/cpuinfo").read_text()
        assert ("amx_bf16" in text) == (" amx_bf16" in flags)
        assert ("no bf16 instructions" in text) == (" avx512_bf16" not in flags
                                                     and " amx_bf16" not in flags)


def test_refreeze_runs_only_on_a_bf16_cpu_and_a_committed_tree_and_records_in_order(
        monkeypatch, capsys):
    """scripts/refreeze.py: `freeze` refuses a CPU without bf16 instructions (it would freeze fp32
    images the labels were not given for) and uncommitted changes to what the key holds;
    `record` refuses any uncommitted change (results are stamped with `git describe --dirty`)
    and writes the evaluation's results before the docs rendered from them."""
    from scripts import refreeze

    bf16 = ["avx512_bf16"]
    assert "avx512_bf16" in refreeze.refusal("freeze", [], [])
    assert "commit" in refreeze.refusal("freeze", bf16, ["pipeline/detector.py"])
    assert refreeze.refusal("freeze", bf16, ["README.md", "benchmarks/results/x.json"]) is None
    assert "git describe" in refreeze.refusal("record", bf16, ["frozen/evaluation.json"])
    assert refreeze.refusal("record", bf16, []) is None
    monkeypatch.setattr(machine, "bf16_flags", lambda fields=None: [])
    assert refreeze.main(["freeze"]) == 2
    assert "no bf16 instructions" in capsys.readouterr().err
    assert refreeze.main(["record", "--dry-run"]) == 0
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("+ ")]
    order = ["evaluation_results.py", "doit", "measure_results.py", "conditioning.py",
             "documents"]
    assert len(shown) == len(order)
    assert all(name in line for name, line in zip(order, shown))
