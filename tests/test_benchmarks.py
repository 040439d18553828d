"""The benchmark harnesses run (at a tiny size, on the CPU, with the preview model) and print and
write the columns they promise. Their figures are measurements, not assertions."""
import json
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


def test_attention_variant_benchmark_harness(tmp_path):
    out = run("attention_variants.py", "--size", "256", "--repeats", "1", "--out", str(tmp_path))
    lines = [line.split() for line in out.splitlines() if line and not line.startswith("#")]
    assert lines[0][:3] == ["variant", "s/forward", "vs"]
    assert [row[0] for row in lines[1:]] == ["usual", "logit-scale", "topk-denominator",
                                            "topk-mask"]
    assert lines[1][2] == "1.00x"
