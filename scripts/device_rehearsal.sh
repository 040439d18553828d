#!/usr/bin/env bash
# Rehearse a GPU session's software on this CPU, at no device time: benchmarks/gpu_run.py runs
# under the GPU image's own python3 and packages, not our pins, so a version clash there would
# cost a whole device session. This builds a venv with the image's versions of what the pipeline
# imports (/work/.library/device/KINDS.md's pip list: torch 2.11.0, transformers 5.17.0,
# huggingface_hub 1.33.0, safetensors 0.8.0, accelerate 1.15.0; triton comes with torch), installs
# the wheels scripts/gpu_wheels.sh fetched with gpu_run.py's own install_wheels (on PYTHONPATH),
# and then, in a clean clone of HEAD:
#   1. a clean `doit` of the whole article on the preview model (the e2e stage's work, on the CPU);
#   2. the CPU tests of the GPU path and what it builds on (attention, speed-ups, variants, stages);
#   3. the workload benchmark's CPU harness (our sampler against diffusers' own pipelines).
# It cannot check what needs CUDA (fp16 kernels, parity, timings) or Python 3.12 (the image's;
# this machine has 3.11, so numpy is the newest for 3.11 rather than the image's 2.5.2).
#   bash scripts/gpu_wheels.sh                    # first, if .whl/ is not there
#   bash scripts/device_rehearsal.sh [DIR]        # default /tmp/device-rehearsal; about 25 min
# It needs the package index (torch 2.11.0 with its CUDA libraries is about 3 GB) and DIR empty
# or an earlier rehearsal's (it replaces that).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
dir=${1:-/tmp/device-rehearsal}
ls .whl/diffusers-*.whl > /dev/null 2>&1 || { echo "error: no wheels in .whl/; run 'bash scripts/gpu_wheels.sh' first" >&2; exit 2; }
if [ -e "$dir" ] && [ ! -e "$dir/.device-rehearsal" ]; then  # never remove a folder it did not make
  echo "error: $dir exists and is not an earlier rehearsal's; name a new folder" >&2; exit 2; fi
rm -rf "$dir" && mkdir -p "$dir" && touch "$dir/.device-rehearsal"
python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install -q uv==0.13.9
# the image's versions; requests, regex, filelock and cloudpickle are in its package list too
"$dir/venv/bin/uv" pip install -q --python "$dir/venv/bin/python" --index-strategy unsafe-best-match \
  torch==2.11.0 transformers==5.17.0 huggingface_hub==1.33.0 safetensors==0.8.0 accelerate==1.15.0 \
  numpy pillow matplotlib jinja2 pytest requests regex filelock cloudpickle
"$dir/venv/bin/python" -c "import sys; sys.path.insert(0, 'benchmarks'); import gpu_run
gpu_run.install_wheels(sys.argv[1])" "$dir/site"
git clone -q "$repo" "$dir/project"
cd "$dir/project"
export PYTHONPATH="$dir/site:$dir/project" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
py="$dir/venv/bin/python"
"$py" -c "import torch, transformers, diffusers, numpy; print('rehearsing with torch', torch.__version__, 'transformers', transformers.__version__, 'diffusers', diffusers.__version__, 'numpy', numpy.__version__)"
status=0
step() {  # step NAME WHAT COMMAND...: run it, its output in DIR/NAME.log
  local name=$1 what=$2; shift 2
  echo "== $name: $what"
  if "$@" > "$dir/$name.log" 2>&1; then echo "   ok"; else
    echo "   FAILED (exit $?); the end of $dir/$name.log:"; tail -n 15 "$dir/$name.log"; status=1; fi
}
step doit "the whole article on the preview model" "$py" -m doit
step tests "the CPU tests of the GPU path" "$py" -m pytest -q -p no:cacheprovider \
  tests/test_cuda.py tests/test_topk_kernel.py tests/test_attention.py tests/test_speedups.py \
  tests/test_variants.py tests/test_stages.py
step workload "our sampler against diffusers' pipelines (sd15_workload.py's CPU harness)" \
  "$py" benchmarks/sd15_workload.py --shape preview --device cpu --per-size 1 --rounds 1 \
  --out "$dir/workload"
echo "logs in $dir/*.log"
exit $status
