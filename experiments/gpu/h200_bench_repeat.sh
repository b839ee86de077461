#!/usr/bin/env bash
# Repeatability of `kswarm bench` on the H200 at --scale large (issue 9, goal max/min <= 1.03): the merged stacked
# linears candidate benched 5 times, each in a fresh process, paired with the faster baseline in alternating blocks.
# The first run measures the node's baseline record; the other four read it and time the faster baseline again.
#   OUT=/some/dir bash experiments/gpu/h200_bench_repeat.sh
# Leaves $OUT/bench-repeat-h200.md (the results table) and $OUT/bench-repeat-h200.json (every run's full result).
set -eu
OUT=${OUT:-/tmp/kswarm-h200}
mkdir -p "$OUT"
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,utilization.gpu,memory.used --format=csv > "$OUT/gpu-before.csv" || true
python3 experiments/bench_repeat.py --runs 5 --device cuda --scale large --time-cap 10 \
  --cache-dir "$(mktemp -d /tmp/kswarm-bench-repeat-XXXX)" --json "$OUT/bench-repeat-h200.json" \
  | tee "$OUT/bench-repeat-h200.md"
nvidia-smi --query-gpu=name,driver_version,utilization.gpu,memory.used --format=csv > "$OUT/gpu-after.csv" || true
