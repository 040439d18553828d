"""The whole article on a GPU, end to end (not a test; prints figures; needs CUDA).

    python3 benchmarks/gpu_e2e.py [--limit 200]

Builds a model of SD 1.5's exact architecture with random weights (its timings are the real
model's), then runs a clean `doit model=<it> device=cuda` in a scratch copy of the project, with
nvidia-smi polling the GPU's memory every 200 ms. Writes
benchmarks/results/gpu_e2e-sd15-cuda.json: every task's wall time (pipeline/progress.py records
them after each task), their sum, the peak GPU memory, and whether doit finished with every task
succeeding. Past --limit seconds doit is stopped and what it finished is written, marked so.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, seconds_by_kind, write_results  # noqa: E402
from conftest import copy_project  # noqa: E402

from pipeline.progress import TIMES  # noqa: E402


def peak_mib(samples: str) -> int:
    """The largest of nvidia-smi's memory.used readings (MiB, one a line)."""
    return max((int(x) for x in samples.split() if x.isdigit()), default=0)


def record(times: dict, finished: bool, returncode: int | None, peak: int, wall: float) -> dict:
    """The results' context: every task's seconds, their sum, and how the run ended."""
    return {"what": "clean `doit model=<random sd15-shaped dir> device=cuda` in a scratch copy: "
                    "every task's wall time (pipeline/progress.py), peak GPU memory polled by "
                    "nvidia-smi every 200 ms",
            "finished": finished, "doit_returncode": returncode,
            "all_succeeded": finished and returncode == 0,
            "wall_seconds": round(wall, 2), "tasks_total_seconds": round(sum(times.values()), 2),
            "peak_gpu_memory_mib": peak,
            "tasks": [{"task": k, "seconds": v} for k, v in times.items()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=float, default=200.0, help="seconds doit may run")
    args = ap.parse_args()
    from pipeline import preview_model

    scratch = Path(tempfile.mkdtemp(prefix="gpu-e2e-"))
    model_dir = preview_model.build(scratch / "sd15", shape="sd15")
    cwd = copy_project(scratch / "project")
    poll = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                             "-lms", "200"], stdout=subprocess.PIPE, text=True)
    t = time.perf_counter()
    doit = subprocess.Popen([sys.executable, "-m", "doit", f"model={model_dir}", "device=cuda"],
                            cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1",  # the carried wheels too
                                          "PYTHONPATH": os.pathsep.join(
                                              [str(cwd), os.environ.get("PYTHONPATH", "")])})
    try:
        returncode, finished = doit.wait(timeout=args.limit), True
    except subprocess.TimeoutExpired:
        doit.kill()
        doit.wait()
        returncode, finished = None, False
    wall = time.perf_counter() - t
    poll.terminate()
    samples = poll.communicate()[0]
    times_file = cwd / TIMES
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    context = record(times, finished, returncode, peak_mib(samples), wall)
    import torch

    context = {"device": torch.cuda.get_device_name(), **context}
    print(f"doit {'finished, exit ' + str(returncode) if finished else 'stopped at the limit'} "
          f"in {wall:.1f} s; {len(times)} tasks, {context['tasks_total_seconds']} s of task time; "
          f"peak GPU memory {context['peak_gpu_memory_mib']} MiB")
    rows = [{"task_kind": k, "seconds": v} for k, v in seconds_by_kind(times).items()]
    write_results(ROOT / "benchmarks" / "results", "gpu_e2e-sd15-cuda", context, rows)


if __name__ == "__main__":
    main()
