#!/usr/bin/env bash
# One GPU session's measurements (issue 11), in as few device calls as the 10-minute limit allows:
#   bash benchmarks/gpu_run.sh OUTDIR [STAGE ...]     (no STAGE: e2e parity tests)
# Stages, with their time limits (seconds):
#   e2e       (260) a clean `doit` of the whole article on random weights of SD 1.5's exact
#             architecture, every task's wall time (doit's JSON reporter), peak GPU memory
#             (nvidia-smi, polled)
#   parity    (120) CPU (fp32) against GPU (fp16) latents, and a GPU rerun's bytes
#   tests     (120) tests/test_cuda.py (carry pytest's wheels: pytest, pluggy, iniconfig)
#   workload  (150) the article's workload against plain diffusers (sd15_workload.py)
#   variants  (120) the attention variants at 768², explicit path and Triton kernels (every tile)
#   speedups  (200) each eager UNet speed-up alone and combined (unet_speedups.py)
#   compile   (540) torch.compile's modes, alone and with the others, at 512² and 768²
#             (results written after each configuration: a cut-off run keeps what finished)
# A session's 30 device minutes hold three calls: 1. `e2e parity tests`, 2. `workload variants
# speedups`, 3. `compile`.
set -u
out=${1:?usage: gpu_run.sh OUTDIR [STAGE ...]}
shift
stages=${*:-e2e parity tests}
mkdir -p "$out" benchmarks/results
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:$PWD
want() { [[ " $stages " == *" $1 "* ]]; }
if want e2e; then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$out/gpu_mem.txt" &
  poll=$!
  python3 -c "from pipeline import preview_model; preview_model.build('/tmp/sd15', shape='sd15')"
  start=$(date +%s)
  timeout "${E2E_LIMIT:-260}" python3 -m doit --reporter json model=/tmp/sd15 device=cuda \
    > "$out/doit.json" 2> "$out/doit.err"
  echo "doit rc=$? in $(( $(date +%s) - start )) s"
  kill $poll
  python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
mem = [int(x) for x in open(f"{out}/gpu_mem.txt").read().split() if x.isdigit()]
print(f"peak GPU memory during doit: {max(mem or [0])} MiB (nvidia-smi, every 200 ms)")
try:
    r = json.load(open(f"{out}/doit.json"))
    for t in r["tasks"]:
        print(f"{t['name']:40s} {t['result']:8s} {float(t.get('elapsed') or 0):8.2f} s")
except Exception as e:
    print("no doit report:", e, open(f"{out}/doit.err").read()[-3000:])
PY
  tail -20 "$out/doit.err"
fi
want tests && timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py
cd benchmarks
want parity && timeout 120 python3 cpu_gpu_parity.py --shapes preview,sd15 --sizes 256,512
want workload && timeout 150 python3 sd15_workload.py --rounds 2
want variants && timeout 120 python3 attention_variants.py --shape sd15 --device cuda --size 768 --batch 4 --tiles
want speedups && timeout 200 python3 unet_speedups.py --configs eager
want compile && timeout 540 python3 unet_speedups.py --configs compiled --sizes 512,768
cp results/* "$out/" 2>/dev/null
exit 0
