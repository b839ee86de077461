#!/usr/bin/env bash
# Nsight Compute in the profile of an accepted CUDA evaluation (evaluators/ncu.py, issue 11), on the GPU host:
#   1. bare ncu (clocks left alone) over a tiny torch matmul: do the counters work on this runtime at all?
#   2. the tensor-pipe counter against a bf16 matmul of known size: ops / (2*M*N*K) should read 1.00 (ncu counts a
#      multiply-add as two operations, which evaluators/ncu.py takes as FLOPs);
#   3. the metric names ncu lists for this chip, as select_metrics reads them;
#   4. with_ncu on the honest Triton softmax (level1/softmax) and on the merged stacked linears (a GEMM), each in a
#      fresh sandboxed child under ncu: the rows, totals and the prompt's lines; when it fails, the same with writes
#      allowed anywhere, with Landlock off, then also on the host's network, to tell which confinement ncu needs;
#   5. the CUDA test of tests/evaluators/test_ncu_profile_step.py.
# Within 4 minutes; everything under $OUT. Usage (repository root): OUT=/some/dir bash experiments/gpu/ncu_check.sh
set -u
OUT=${OUT:-/tmp/kswarm-ncu}
mkdir -p "$OUT"
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
CACHE=${CACHE:-/tmp/kswarm-ncu-cache}
DEADLINE=$(( $(date +%s) + 230 ))
cap() {   # a step's timeout: its own cap, or what is left of the 4 minutes if less (at least 5 s)
  local left=$(( DEADLINE - $(date +%s) ))
  if [ "$left" -lt "$1" ]; then echo $(( left > 5 ? left : 5 )); else echo "$1"; fi
}
NCU=$(python3 -c "from evaluators.ncu import find_ncu; print(find_ncu() or '')")
{
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  uname -r; git rev-parse HEAD
  echo "ncu: ${NCU:-none}"; [ -n "$NCU" ] && "$NCU" --version | tail -n 2
} 2>&1 | tee "$OUT/env.txt"

{
if [ -n "$NCU" ]; then
  echo "== 1. bare ncu over a torch matmul"
  timeout "$(cap 40)" "$NCU" --clock-control none --metrics gpu__time_duration.sum python3 -c "
import torch
a = torch.randn(1024, 1024, device='cuda'); b = a @ a; torch.cuda.synchronize(); print('matmul done', b.shape)" \
    > "$OUT/ncu_bare.txt" 2>&1
  echo "rc=$?"; tail -n 12 "$OUT/ncu_bare.txt"

  echo "== 2. the tensor-pipe counter on a bf16 matmul of 4096^3"
  timeout "$(cap 40)" "$NCU" --clock-control none --csv --print-units base \
    --metrics gpu__time_duration.sum,sm__ops_path_tensor_src_bf16_dst_fp32.sum,dram__bytes_read.sum python3 -c "
import torch
a = torch.randn(4096, 4096, device='cuda', dtype=torch.bfloat16); torch.cuda.synchronize()
b = a @ a; torch.cuda.synchronize()" > "$OUT/ncu_calib.csv" 2>&1
  echo "rc=$?"
  python3 - "$OUT/ncu_calib.csv" <<'PY'
import sys
from evaluators.ncu_report import parse_csv
for launch in parse_csv(open(sys.argv[1]).read()):
    ops = launch.metrics.get("sm__ops_path_tensor_src_bf16_dst_fp32.sum")
    print(f"  {launch.name[:70]}: {launch.metrics.get('gpu__time_duration.sum', 0) * 1e3:.4f} ms, tensor ops "
          f"{ops}, ops / (2*4096^3) = {ops / (2 * 4096 ** 3):.3f}" if ops else f"  {launch.name[:70]}: no tensor ops")
PY
  grep -E "==(ERROR|WARNING)==" "$OUT/ncu_calib.csv" | head -n 3

  echo "== 3. metric names for this chip"
  timeout "$(cap 20)" "$NCU" --query-metrics 2>&1 | grep -E "(sm__ops_path_tensor|dram__bytes_read|gpu__time_duration|sm__sass_thread_inst_executed_op_ffma)" | head -n 20
  python3 -c "
from evaluators.ncu import find_ncu, query_metrics
from evaluators.ncu_report import select_metrics
m = select_metrics(query_metrics(find_ncu())); print(len(m), 'metrics chosen; tensor:', [x for x in m if 'tensor' in x])"
fi

echo "== 4. with_ncu in a sandboxed child"
timeout "$(cap 130)" python3 - "$CACHE" <<'PY' 2>&1 | tee "$OUT/with_ncu.txt"
import dataclasses, json, sys, time
from pathlib import Path
from evaluators.judge import build_reference
from evaluators.ncu import ncu_profile
from evaluators.profiling import with_ncu
from evaluators.sandbox import SandboxLimits
from proposers.llm.prompts import ncu_lines

cache = Path(sys.argv[1])
limits = SandboxLimits(timeout_s=120, memory_mb=32768, device="cuda")
diagnosed = False
for problem, cand in (("experiments/problems/level1/softmax.py", "tests/fixtures/candidates/gpu/g03_honest_triton_softmax.py"),
                      ("experiments/problems/level2/stacked_linears.py", "experiments/candidates/stacked_linears_merged.py")):
    ref = build_reference(problem, "default", "cuda", seed=5)
    source = Path(cand).read_text()
    t0 = time.monotonic()
    out = with_ncu({"launches": 1}, ref, source, limits, cache)
    print(f"-- {cand}: {time.monotonic() - t0:.1f} s")
    if "ncu" not in out and "ncu_error" not in out:
        print("nothing added: not a CUDA device?")
        continue
    if "ncu_error" in out:
        print("ncu_error:", out["ncu_error"])
        # once: which confinement ncu needs relaxed. Landlock on but writes anywhere (a write path), Landlock off
        # (its scope: abstract unix sockets and signals to processes outside), then also the host's network
        for what, changed in (() if diagnosed else (
                ("Landlock on, writes anywhere", dict(extra_writable=("/",))),
                ("Landlock off", dict(confine_writes=False)),
                ("Landlock off, host network", dict(confine_writes=False, isolate_network=False)))):
            again = ncu_profile(ref, source, dataclasses.replace(limits, **changed), cache)
            print(f"   {what}:", again.get("ncu_error") or f"{len(again['ncu']['rows'])} rows")
            if "ncu" in again:
                break
        diagnosed = True
        continue
    ncu = out["ncu"]
    print(json.dumps({k: v for k, v in ncu.items() if k != "rows"}, indent=1, sort_keys=True, default=str))
    for r in ncu["rows"]:
        print(" ", json.dumps(r, sort_keys=True, default=str))
    print("\n".join(ncu_lines(ncu)))
PY
echo "rc=${PIPESTATUS[0]}"

echo "== 5. the CUDA test"
timeout "$(cap 60)" python3 -m pytest -q -p no:cacheprovider tests/evaluators/test_ncu_profile_step.py -k triton_softmax \
  > "$OUT/pytest.txt" 2>&1
echo "rc=$?"; tail -n 15 "$OUT/pytest.txt"

echo "== 6. kswarm bench --ncu: the pipeline's own ncu step, after timing, with the device still alone"
timeout 150 python3 -m kswarm.cli bench experiments/problems/level1/softmax.py \
  tests/fixtures/candidates/gpu/g03_honest_triton_softmax.py --device cuda --time-cap 1 --ncu --json \
  --cache-dir "$CACHE" > "$OUT/bench_ncu.json" 2> "$OUT/bench_ncu.err"
echo "rc=$?"
python3 - "$OUT/bench_ncu.json" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    sys.exit(f"no result: {e}")
p = d.get("profile") or {}
print(d["status"], "speedup", d.get("speedup"), "stages", d.get("stage_s"))
print("ncu_error:", p.get("ncu_error")) if "ncu_error" in p else print("ncu totals:", json.dumps((p.get("ncu") or {}).get("totals"), default=str)[:600])
PY
} 2>&1 | tee "$OUT/summary.txt"
