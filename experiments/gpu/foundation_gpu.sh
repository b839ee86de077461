#!/usr/bin/env bash
# The foundation's GPU proofs, in one call on a CUDA host (run from the repository root):
#   the CUDA timer against triton.testing.do_bench, the GPU-only cheats (side stream, allocator reuse) rejected,
#   honest Triton and algebraic candidates accepted and benchmarked at --scale large.
# Usage: OUT=/some/dir bash experiments/gpu/foundation_gpu.sh     (writes logs and JSON under $OUT)
set -u
OUT=${OUT:-/tmp/kswarm-gpu}
mkdir -p "$OUT"
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
KS="python3 -m kswarm.cli"
C=tests/fixtures/candidates/gpu
P=experiments/problems
CACHE=/tmp/kswarm-cache
[ -z "${SKIP_TIMER:-}" ] && {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
  python3 -m pytest -q -p no:cacheprovider tests/evaluators/test_timers.py
  python3 experiments/gpu/cuda_timer_check.py
} 2>&1 | tee "$OUT/timer.log"
run() {  # name, then kswarm arguments; every result is appended to one JSON-lines file
  local name=$1; shift
  local t0=$SECONDS
  timeout 300 $KS "$@" --device cuda --cache-dir $CACHE --json > "$OUT/last.json" 2> "$OUT/last.err"
  local rc=$?
  python3 -c "import json; d=json.load(open('$OUT/last.json')); d['name']='$name'; print(json.dumps(d))" >> "$OUT/results.jsonl" 2>/dev/null
  echo "$name rc=$rc $((SECONDS - t0))s $(python3 -c "import json; d=json.load(open('$OUT/last.json')); print(d['status'], '|', d['reason'][:150], '| speedup', d.get('speedup'), d.get('speedup_ci'))" 2>/dev/null) $(tail -c 300 "$OUT/last.err")"
}
[ -n "${ONLY:-}" ] && SKIP_TIMER=1
{
  for step in ${ONLY:-g01_warn g01_reject g02_warn g03_verify g04_verify g03_bench g04_bench g04_bench2}; do case $step in
  g01_warn)   run g01_warn    verify $P/level1/matmul.py $C/g01_side_stream_matmul.py --scale large --static warn ;;
  g01_reject) run g01_reject  verify $P/level1/matmul.py $C/g01_side_stream_matmul.py --scale large ;;
  g02_warn) run g02_warn    verify $P/level1/matmul.py $C/g02_allocator_reuse.py --scale large --static warn ;;
  g03_verify) run g03_verify  verify $P/level1/softmax.py $C/g03_honest_triton_softmax.py --scale large ;;
  g04_verify) run g04_verify  verify $P/level2/stacked_linears.py experiments/candidates/stacked_linears_merged.py --scale large ;;
  g03_bench) run g03_bench   bench $P/level1/softmax.py $C/g03_honest_triton_softmax.py --scale large --time-cap 5 ;;
  g04_bench) run g04_bench   bench $P/level2/stacked_linears.py experiments/candidates/stacked_linears_merged.py --scale large --time-cap 5 ;;
  g04_bench2) run g04_bench2  bench $P/level2/stacked_linears.py experiments/candidates/stacked_linears_merged.py --scale large --time-cap 5 ;;
  esac; done
} 2>&1 | tee "$OUT/verdicts.log"
