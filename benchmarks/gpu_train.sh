#!/usr/bin/env bash
# Train several models at once on one GPU from a compact pack of Training+PublicTest
# (PrivateTest never leaves the dev machine; it is evaluated there with the returned weights).
# Usage (on the GPU box): bash benchmarks/gpu_train.sh PACK OUTDIR BUDGET_MIN CONFIG...
set -uo pipefail
pack=$1; out=$2; budget=$3; shift 3
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
mkdir -p runs
# GPU utilisation and memory every 5 s while the jobs run (images/s per job are in each metrics.jsonl).
smi=
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > runs/gpu_util.csv &
  smi=$!
fi
pids=()
for cfg in "$@"; do
  name=$(basename "$cfg" .yaml)
  python3 -m fervid train --config "$cfg" --data "$pack" --out "runs/$name" --no-progress \
      --set time_budget_minutes=$budget eval_private=false ${EXTRA_SET:-} > "runs/$name.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait $p; done
[ -n "$smi" ] && kill "$smi"
for cfg in "$@"; do
  name=$(basename "$cfg" .yaml)
  tail -3 "runs/$name.log"
  # fp16 weights + metadata; split above 15 MB (the transfer's per-file limit).
  python3 - "$name" "$out" <<'PY'
import sys, torch
from fervid.models.checkpoint import save_safetensors_checkpoint
name, out = sys.argv[1], sys.argv[2]
ck = torch.load(f"runs/{name}/best.pt", map_location="cpu", weights_only=True)
save_safetensors_checkpoint(ck, f"{out}/{name}.safetensors")
PY
  cp "runs/$name/metrics.jsonl" "runs/$name.metrics.jsonl" 2>/dev/null
  cp "runs/$name/final.json" "runs/$name.final.json" 2>/dev/null
  f="$out/$name.safetensors"
  if [ "$(stat -c %s "$f")" -gt 15000000 ]; then split -b 15000000 -d "$f" "$f.part" && rm "$f"; fi
done
tar czf "$out/logs.tar.gz" runs/*.log runs/*.jsonl runs/*.json $(ls runs/gpu_util.csv 2>/dev/null)
ls -la "$out"
