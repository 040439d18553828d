"""The benchmark harnesses run (at a tiny size, on the CPU, with the preview model) and print and
write the columns they promise. Their figures are measurements, not assertions."""
import json
import re
import os

import pytest
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(script, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_workload_benchmark_harness(tmp_path):
    out = run("sd15_workload.py", "--shape", "preview", "--device", "cpu", "--sizes", "64,128",
              "--per-size", "2", "--out", str(tmp_path))
    assert "plain_s" in out and "ratio" in out and "unet_tflops_achieved" in out
    result = json.loads((tmp_path / "sd15_workload-preview-cpu.json").read_text())
    assert [r["size"] for r in result["rows"]] == [64, 128]
    for r in result["rows"]:
        assert r["generations"] == 2 and r["plain_s"] > 0 and r["ours_s"] > 0
        # the ratio is of the unrounded times: equal to the printed ones' to rounding
        assert r["ratio"] == pytest.approx(r["plain_s"] / r["ours_s"], abs=0.011)
        assert r["batched_s"] > 0
        assert r["ratio_batched"] == pytest.approx(r["batched_s"] / r["ours_s"], abs=0.011)
        assert r["unet_tflop_per_sample"] > 0 and r["batch"] == 1
    assert result["torch"] and result["diffusers"] and result["device"].startswith("cpu")
    assert (tmp_path / "sd15_workload-preview-cpu.csv").read_text().startswith("size,")


def test_cpu_path_benchmark_harness(tmp_path):
    out = run("cpu_path.py", "--parts", "peak,calls,eval", "--sizes", "64", "--batches", "1",
              "--repeats", "1", "--eval-seeds", "2", "--eval-sizes", "128", "--out", str(tmp_path))
    assert "matmul peak" in out and "class_agreement" in out
    calls = json.loads((tmp_path / "cpu_path-calls-preview-cpu.json").read_text())
    assert {r["config"] for r in calls["rows"]} == {"none", "channels_last", "bf16_autocast",
                                                   "channels_last+bf16_autocast"}
    for r in calls["rows"]:
        assert r["seconds_per_call"] > 0 and 0 < r["fraction_of_peak"] and r["gflop_per_call"] > 0
        assert (r["rel_diff_vs_none"] == 0) == (r["config"] == "none")
    from pipeline import machine, speedups  # the default path is the CPU kind's (bf16 or not)

    default = speedups.DEFAULTS["cpu"] if machine.bf16_flags() else speedups.CPU_WITHOUT_BF16
    assert calls["paths"]["default"] == list(default)
    evaluation = json.loads((tmp_path / "cpu_path-eval-preview-cpu.json").read_text())
    (row,) = evaluation["rows"]
    assert row["size"] == 128 and row["generations"] == 2 and 0 <= row["class_agreement"] <= 1
    assert 0 <= row["two_plus_p_value"] <= 1 and evaluation["speedup"] > 0


def test_attention_variant_benchmark_harness(tmp_path):
    out = run("attention_variants.py", "--size", "256", "--repeats", "1", "--out", str(tmp_path))
    lines = [line.split() for line in out.splitlines() if line and not line.startswith("#")]
    assert lines[0][:3] == ["variant", "s/forward", "vs"]
    assert [row[0] for row in lines[1:]] == ["usual", "logit-scale", "topk-denominator",
                                            "topk-mask", "topk-denominator", "topk-mask"]
    assert lines[1][2] == "1.00x"
    # on the CPU the top-k variants run twice: the CPU's blocks, then the GPU's
    result = json.loads((tmp_path / "attention_variants-preview-cpu.json").read_text())
    budgets = [row["block_budget_mib"] for row in result["rows"]]
    from pipeline.attention import BUDGET_BYTES, CPU_BUDGET_BYTES

    cpu, gpu = CPU_BUDGET_BYTES >> 20, BUDGET_BYTES >> 20
    assert budgets == [cpu] * 4 + [gpu] * 2 and result["block_budget_mib"] == cpu


def test_parity_benchmark_harness_compares_with_an_fp32_reference_and_keeps_each_row(tmp_path):
    """benchmarks/cpu_gpu_parity.py with --device cpu (the CPU's default path on the side the GPU
    takes): the reference is loaded with CPU_REFERENCE (fp32 modules as loaded, every thread,
    whatever CPU kind: the default may be bf16 and one thread a generation), and a shape's file
    holds every row finished so far."""
    out = run("cpu_gpu_parity.py", "--device", "cpu", "--shapes", "preview", "--sizes", "64,72",
              "--out", str(tmp_path))
    assert "preview 64 cpu (none):" in out
    result = json.loads((tmp_path / "cpu_gpu_parity-preview-cpu.json").read_text())
    assert result["cpu_speedups"] == "none" and result["shape"] == "preview"
    assert [r["size"] for r in result["rows"]] == [64, 72]
    for r in result["rows"]:
        assert r["gpu_rerun_identical"] and r["latent_std"] > 0
        assert 0 <= r["relative_difference"] < 0.5
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import cpu_gpu_parity

    from pipeline import speedups
    assert speedups.parse(cpu_gpu_parity.CPU_REFERENCE, "cpu") == ()


def _result_numbers() -> set[float]:
    import re

    found = set()
    for path in (ROOT / "benchmarks/results").iterdir():
        for m in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", path.read_text()):
            found.add(float(m))
    return found


NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?%?|(?<![\w.,])\d+\.\d+%?(?![\w.])")
CITED = re.compile(r"([\w*.-]+?)\.(?:json|csv|\{json,csv\})\b")


def _cited_files(text: str) -> list[Path]:
    """The committed results files a passage names (bare, with their folder, or as a glob)."""
    out = []
    for m in CITED.finditer(text):
        stem = m.group(1).split("/")[-1]
        out += sorted((ROOT / "benchmarks/results").glob(f"{stem}.json"))
        out += sorted((ROOT / "benchmarks/results").glob(f"{stem}.csv"))
    return out


def _file_numbers(paths) -> set[float]:
    found = set()
    for path in paths:
        found |= {float(m) for m in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", path.read_text())}
    return found


def _unbacked(doc: str, allowed: dict[str, str], results: set[float] | None = None) -> list[str]:
    """Measured-looking numbers in a document (decimals, thousands with commas) that the results
    file its paragraph cites (or, where the paragraph cites none, its section) does not hold at
    the document's precision (a percentage may be a stored fraction). `results` instead checks
    against a given set of numbers (for the check's own test)."""
    text = re.sub(r"```.*?```", " ", doc, flags=re.S)
    text = re.sub(r"\b(?:SD|SDXL|Stable Diffusion)\s?\d+(?:\.(?:\d+|x))?", "MODEL", text)
    missing = []
    for section in re.split(r"\n(?=#+ )", text):
        section_files = _cited_files(section)
        for para in re.split(r"\n\s*\n", section):
            plain = re.sub(r"`[^`]*`", lambda m: " " if not CITED.search(m.group(0)) else m.group(0), para)
            numbers = [m for m in NUMBER.finditer(re.sub(r"`[^`]*`", " ", para))
                       if m.group(0).rstrip("%") not in allowed]
            if not numbers:
                continue
            files = _cited_files(plain) or section_files
            found = results if results is not None else _file_numbers(files)
            if results is None and not files:
                missing += [f"{m.group(0)} (no results file cited in its paragraph or section)"
                            for m in numbers]
                continue
            body = re.sub(r"`[^`]*`", " ", para)
            for m in numbers:
                token = m.group(0)
                value = float(token.rstrip("%").replace(",", ""))
                if body[max(m.start() - 1, 0):m.start()] in ("−", "-"):  # a minus sign
                    value = -value
                places = len(token.rstrip("%").split(".")[1]) if "." in token else 0
                candidates = {round(r, places) for r in found}
                if token.endswith("%"):
                    candidates |= {round(r * 100, places) for r in found}
                if value not in candidates:
                    where = ", ".join(f.name for f in files) or "the given numbers"
                    missing.append(f"{token} (not in {where}) in "
                                   f"…{' '.join(body[max(m.start() - 60, 0):m.end()].split())}")
    return missing


README_NOT_MEASURED = {
    "3.10": "the Python version required",
    "5.7": "the UNet's parameter count (millions), checked against the shipped weights below",
    "7.5": "SD's classifier-free guidance scale, a setting",
    "0.068": "sqrt(alpha-bar) at SD's last timestep, cited from Lin et al. 2024",
    "0.0001": "the bound below which a p value is written as p < 0.0001",
}
DOCUMENTS = ("README.md", "docs/preview-model.md", "benchmarks/README.md")


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_every_figure_a_document_quotes_is_in_the_results_file_it_cites(doc):
    missing = _unbacked((ROOT / doc).read_text(), README_NOT_MEASURED)
    assert not missing, f"{doc}: numbers its cited results do not hold: " + "; ".join(missing)


def test_the_citation_check_fails_where_it_should():
    results = {0.3333, 12.34}
    assert _unbacked("ours runs at 33.3% of the peak, 12.345 s", {}, results)
    assert _unbacked("a mean of −34.28 dB", {}, {34.28})  # the sign counts
    assert not _unbacked("a mean of −34.28 dB", {}, {-34.28})
    # a number is looked up in the file its own paragraph cites, not in any file
    some = sorted((ROOT / "benchmarks/results").glob("*.json"))[:2]
    number = next(iter(_file_numbers([some[0]]) - _file_numbers([some[1]]) - {0.0}))
    quoted = f"{number:.4f}".rstrip("0").rstrip(".")
    if "." in quoted:
        assert not _unbacked(f"it took {quoted} s (`{some[0].name}`)", {})
        assert _unbacked(f"it took {quoted} s (`{some[1].name}`)", {})
    assert _unbacked("it took 1,234.5 s", {})  # no file cited at all


def test_the_parameter_count_the_readme_quotes_is_the_shipped_unet():
    import math

    from safetensors import safe_open

    path = ROOT / "models/preview/unet/diffusion_pytorch_model.safetensors"
    with safe_open(str(path), "pt") as f:
        count = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    assert f"({count / 1e6:.1f} M UNet parameters)" in " ".join((ROOT / "README.md").read_text().split())


def test_the_readme_layout_names_every_pipeline_module():
    import re

    text = (ROOT / "README.md").read_text()
    layout = re.search(r"```\nfigures.toml .*?```", text, re.S).group(0)
    named = set(re.findall(r"\b([a-z_]+)\b", layout))
    modules = {p.stem for p in (ROOT / "pipeline").glob("*.py") if p.stem != "__init__"}
    assert modules <= named, sorted(modules - named)


def test_vae_colour_benchmark_harness(tmp_path):
    out = run("vae_colour.py", "--from-shipped", "--images", "6", "--heldout", "2", "--steps",
              "2", "--batch", "2", "--crop", "64", "--out", str(tmp_path))
    assert "approx held-out dB" in out
    result = json.loads((tmp_path / "vae_colour-shipped-cpu.json").read_text())
    # the untouched shipped VAE first, then each colour weight fine-tuned side by side
    assert [(r["colour_weight"], r["steps"]) for r in result["rows"]] == [(0, 0), (0, 2), (1, 2)]
    assert all(0 < r["recon_mse_heldout"] < 1 and r["approx_psnr_heldout_db"] > 10
               for r in result["rows"])


def test_vae_decode_benchmark_harness(tmp_path):
    out = run("vae_decode.py", "--sizes", "64,96", "--repeats", "1", "--latents",
              str(tmp_path / "none"), "--out", str(tmp_path), "--tag", "t")
    assert "the default build's VAE decodes" in out
    result = json.loads((tmp_path / "vae_decode-preview-cpu-t.json").read_text())
    rows = result["rows"]
    assert [(r["size"], r["config"]) for r in rows] == \
        [(s, c) for s in (64, 96) for c in ("contiguous", "channels_last", "channels_last/workers")]
    today = [r for r in rows if r["config"] == "contiguous"]
    # today's decode is the reference: it matches itself exactly; every time is measured
    assert all(r["vs_contiguous"] == 1.0 and r["max_level_difference"] == 0 for r in today)
    assert all(r["seconds_per_image"] > 0 and r["real_latents"] == 0 for r in rows)
    assert all(0 <= r["max_level_difference"] <= 255 for r in rows)


def test_evaluation_parity_counts_what_another_evaluation_changes(tmp_path):
    """The committed frozen evaluation against a copy of itself with one record's class
    changed: that one generation, and only it, is counted as moved."""
    from pipeline import model

    frozen = json.loads((ROOT / "frozen/evaluation.json").read_text())
    gen = "blonde-900001-768x768-usual"
    assert frozen["records"][gen]["class"] != "none"
    frozen["records"][gen]["class"] = "none"
    (tmp_path / "other.json").write_text(json.dumps(frozen))
    model.prepare(str(ROOT / model.PREVIEW_DIR), tmp_path / "model.json")
    out = run("evaluation_parity.py", str(tmp_path / "other.json"), "--model-json",
              str(tmp_path / "model.json"), "--out", str(tmp_path))
    assert "paired verdicts:" in out
    result = json.loads((tmp_path / "evaluation_parity-cpu.json").read_text())
    assert result["cells"] == result["of_cells"] and result["inputs_that_differ"] == []
    assert result["same_class"] == result["generations"] - 1
    assert result["same_class_per_size"]["768"]["same"] == result["same_class_per_size"]["768"]["n"] - 1
    moved = [r for r in result["rows"] if r["same_class"] < 1]
    assert [(r["size"], r["variant"]) for r in moved] == [(768, "usual")]


def test_training_record_compares_a_model_with_the_shipped_bytes(tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(ROOT / "models/preview", copy)
    out = run("training_record.py", "--model", str(copy), "--tag", "t", "--out", str(tmp_path),
              "--compare", str(ROOT / "models/preview"))
    assert "every file the same bytes" in out
    weights = copy / "vae/diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # one byte differs
    out = run("training_record.py", "--model", str(copy), "--tag", "t", "--out", str(tmp_path),
              "--compare", str(ROOT / "models/preview"))
    assert "differ: vae/diffusion_pytorch_model.safetensors" in out
    record = json.loads((tmp_path / "train_miniature-cpu-t.json").read_text())
    assert record["all_same_bytes"] is False
    assert record["same_bytes"]["vae/diffusion_pytorch_model.safetensors"] is None


def test_a_reproduction_is_claimed_only_for_the_weights_shipped_now():
    """docs/preview-model.md says the shipped weights were reproduced from scratch only from
    benchmarks/results/train_miniature-cpu-repro.json, and that record must name every file of
    today's SHA256SUMS (training.json aside) with today's digest; without it the document says
    the weights have not been rerun."""
    from pipeline.model import PREVIEW_DIR, read_sums

    path = ROOT / "benchmarks/results/train_miniature-cpu-repro.json"
    doc = (ROOT / "docs/preview-model.md").read_text()
    if path.is_file():
        record = json.loads(path.read_text())
        sums = read_sums(PREVIEW_DIR)
        sums.pop("training.json")
        assert record["all_same_bytes"] and record["same_bytes"] == sums
        assert "**Reproduced from scratch.**" in doc
    else:
        assert "**Reproduced from scratch.**" not in doc
        assert "have not yet been rerun from scratch" in doc


def test_unet_speedups_benchmark_harness(tmp_path):
    out = run("unet_speedups.py", "--shape", "preview", "--device", "cpu", "--sizes", "64",
              "--gens", "1", "--repeats", "1", "--configs", "fused_qkv,channels_last+fused_qkv",
              "--out", str(tmp_path))
    assert "seconds_per_call" in out and "rel_diff_vs_plain" in out
    result = json.loads((tmp_path / "unet_speedups-preview-cpu.json").read_text())
    # "plain" is always measured first: every other row is set against it
    configs = [r["config"] for r in result["rows"]]
    assert configs == ["plain", "fused_qkv", "channels_last+fused_qkv"]
    plain = result["rows"][0]
    assert plain["vs_plain"] == 1.0 and plain["rel_diff_vs_plain"] == 0.0
    for r in result["rows"]:
        assert r["seconds_per_call"] > 0 and r["batch"] == 2 and r["tflops"] >= 0
        assert r["rel_diff_vs_plain"] < 1e-4  # a speed-up leaves the numbers alone
    assert result["unet_tflop_per_sample"]["64"] > 0


def test_unet_speedups_rejects_an_unknown_name_before_loading_anything():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/unet_speedups.py"), "--configs",
                           "plain,turbo", "--device", "cpu"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "unknown speed-up turbo" in proc.stderr


def test_conditioning_benchmark_harness(tmp_path):
    out = run("conditioning.py", "--seeds", "1", "--large", "256", "--out", str(tmp_path))
    assert "prompt encodings cosine" in out and "uniform attention" in out
    result = json.loads((tmp_path / "conditioning-cpu.json").read_text())
    rows = {(r["measure"], r["prompt"]): r for r in result["rows"]}
    assert rows[("prompt tokens", "miko")]["value"] > 0
    assert -1 <= rows[("prompt encodings cosine", "both")]["value"] <= 1
    entropies = [r for r in result["rows"] if r["measure"].startswith("attention entropy level")]
    assert entropies and all(r["value"] > 0 for r in entropies)
    for key in ("miko", "blonde"):
        assert 0 <= rows[("one, prompt's hair 512", key)]["value"] <= 1
        assert 0 <= rows[("characters with prompt's hair 256", key)]["value"] <= 1
    assert result["seeds_per_prompt"] == 1 and result["large"] == 256


def test_uniform_attention_is_attention_with_equal_logits():
    """The conditioning benchmark's uniform averaging equals diffusers' own attention run with
    every query zeroed (all logits equal), so it is exactly 'each query attends to every key
    equally'."""
    import torch
    from diffusers.models.attention_processor import Attention, AttnProcessor

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from conditioning import UniformAttention

    torch.manual_seed(0)
    attn = Attention(32, heads=4, dim_head=8)
    x = torch.randn(2, 50, 32)
    with torch.no_grad():
        ours = UniformAttention()(attn, x)
        attn.to_q.weight.zero_()
        theirs = AttnProcessor()(attn, x)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(ours, ours[:, :1].expand_as(ours))  # every query gets the same output
    assert not torch.allclose(ours[0], ours[1])  # ... the mean of its own image's values


def test_the_gpu_run_fits_one_device_call_in_priority_order_and_returns_three_files(tmp_path,
                                                                                   monkeypatch):
    """benchmarks/gpu_run.py (issue 28's one call of a 15-minute device session): stages run in
    the order of priority whatever order they are named in; each runs under `timeout` for its
    limit or the budget left; one that cannot have its minimum is skipped and named for the next
    session; OUT gets the summary, the log and one archive of the results the run wrote."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_run

    assert [s.name for s in gpu_run.plan(["tests", "e2e"])] == ["e2e", "tests"]
    assert gpu_run.DEFAULT[:3] == ("e2e", "parity", "tests")  # the fp16 path is right, first
    with pytest.raises(SystemExit, match="unknown stage turbo; known: e2e"):
        gpu_run.plan(["turbo"])
    stage = gpu_run.plan(["speedups"])[0]
    assert gpu_run.allowance(stage, 1000) == stage.limit
    assert gpu_run.allowance(stage, stage.minimum + 5) == stage.minimum + 5
    assert gpu_run.allowance(stage, stage.minimum - 1) is None

    results = tmp_path / "results"
    results.mkdir()
    (results / "old.json").write_text("{}")
    os.utime(results / "old.json", (0, 0))
    monkeypatch.setattr(gpu_run, "RESULTS", results)
    monkeypatch.setattr(gpu_run, "WHEELS", tmp_path / "no-wheels")
    now = [0.0]
    calls = []

    def fake_run(command, **kwargs):  # every stage takes what it may; tests fail
        calls.append(command)
        now[0] += float(command[1])
        (results / f"stage-{len(calls)}.json").write_text("{}")
        return subprocess.CompletedProcess(command, 1 if "pytest" in command else 124)

    out = tmp_path / "out"
    summary = gpu_run.main([str(out), "--budget", "400"], run=fake_run, clock=lambda: now[0])
    e2e, parity, tests = gpu_run.plan(["e2e", "parity", "tests"])
    assert [c[0] for c in calls] == ["timeout"] * 3
    assert [int(c[1]) for c in calls] == [e2e.limit, parity.limit, 400 - e2e.limit - parity.limit]
    assert summary[0].startswith("e2e: timed out") and summary[2].startswith("tests: exit 1")
    assert all("skipped" in line and "gpu_run.py OUT" in line for line in summary[3:])
    assert len(summary) == len(gpu_run.DEFAULT)
    assert sorted(p.name for p in out.iterdir()) == ["gpu-results.tar.gz", "log.txt", "summary.txt"]
    import tarfile

    with tarfile.open(out / "gpu-results.tar.gz") as t:  # what the run wrote, not what was there
        assert sorted(t.getnames()) == [f"results/stage-{i}.json" for i in (1, 2, 3)]
    dry = gpu_run.main([str(tmp_path / "dry"), "--dry-run"], run=None)
    assert dry[0].startswith("e2e: would run for up to")


def test_the_gpu_run_measures_what_a_device_call_would_carry_and_refuses_too_much(tmp_path):
    """gpu_run.carry_bytes counts what a device call takes along: tracked and untracked files
    that git does not ignore, shared/, and the carried wheels, not ignored build outputs; over
    the 64 MiB a call carries, --dry-run's check fails naming the largest part."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_run

    repo = tmp_path / "repo"
    (repo / "shared").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / ".gitignore").write_text("build/\n.whl/\n")
    (repo / "tracked.txt").write_bytes(b"x" * 1000)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    (repo / "untracked.txt").write_bytes(b"y" * 300)
    (repo / "shared" / "spec.md").write_bytes(b"z" * 20)
    (repo / "build").mkdir()
    (repo / "build" / "huge.bin").write_bytes(b"0" * 5000)  # ignored: stays behind
    (repo / ".whl").mkdir()
    (repo / ".whl" / "a.whl").write_bytes(b"w" * 700)
    parts = gpu_run.carry_bytes(repo, (repo / ".whl", repo / "absent"))
    assert parts == {"tree": 1000 + 300 + 20 + len("build/\n.whl/\n"), ".whl": 700, "absent": 0}
    assert gpu_run.carry_line(parts).startswith("carry: 0.0 MiB of 64 MiB (tree 0.0, .whl 0.0")
    with pytest.raises(SystemExit, match="would be refused; make tree smaller"):
        gpu_run.carry_line(parts, limit=2000)


def test_task_times_survive_a_run_that_is_cut_off_and_the_gpu_e2e_record_says_so(tmp_path,
                                                                                  monkeypatch):
    """pipeline/progress.Reporter writes the task times after every task (a doit killed at
    gpu_e2e.py's limit keeps them), and gpu_e2e's record marks a run that did not finish."""
    import io
    from types import SimpleNamespace

    from pipeline import progress

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_e2e

    monkeypatch.chdir(tmp_path)
    reporter = progress.Reporter(io.StringIO(), {})
    task = SimpleNamespace(name="sample:768x768", actions=[object()], title=lambda: "sample")
    reporter.execute_task(task)
    reporter.add_success(task)  # no complete_run: the process was killed here
    assert list(json.loads((tmp_path / progress.TIMES).read_text())) == ["sample:768x768"]

    assert gpu_e2e.peak_mib("512\n6697\n\n3000\n") == 6697 and gpu_e2e.peak_mib("") == 0
    cut = gpu_e2e.record({"model": 4.5, "sample:768x768": 40.0}, False, None, 6697, 200.0)
    assert cut["all_succeeded"] is False and cut["tasks_total_seconds"] == 44.5
    assert gpu_e2e.record({}, True, 0, 1, 1.0)["all_succeeded"] is True
