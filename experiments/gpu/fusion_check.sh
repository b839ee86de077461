#!/usr/bin/env bash
# The fused Triton kernels on the GPU host (issue 10): (a) the CUDA tests of the fusion generator, (b) its candidates
# for ten KernelBench level 2 problems (head, their own sizes) verified and timed by `kswarm bench`, each against
# fresh eager and torch.compile baselines, then a table of the best accepted speedup over max(eager, compile).
# From the repository root on the GPU host (resumable: a candidate already benched in $OUT is not run again):
#   OUT=/tmp/kswarm-fusion POINTS=3 bash experiments/gpu/fusion_check.sh   (SKIP_TESTS=1 to go straight to (b))
# KB is the level 2 folder of KernelBench head (default ../shared/kernelbench/head/level2; with the files copied into
# the checkout as for h200_kernelbench_campaign.sh: KB=.kb/head/level2). PROBLEMS, POINTS, TIME_CAP narrow the run.
set -u
OUT=${OUT:-/tmp/kswarm-fusion}
POINTS=${POINTS:-3}
TIME_CAP=${TIME_CAP:-2}
KB=${KB:-../shared/kernelbench/head/level2}
PROBLEMS=${PROBLEMS:-"76_Gemm_Add_ReLU 86_Matmul_Divide_GELU 59_Matmul_Swish_Scaling 45_Gemm_Sigmoid_LogSumExp
  99_Matmul_GELU_Softmax 30_Gemm_GroupNorm_Hardtanh 81_Gemm_Swish_Divide_Clamp_Tanh_Clamp 9_Matmul_Subtract_Multiply_ReLU
  56_Matmul_Sigmoid_Sum 49_ConvTranspose3d_Softmax_Sigmoid"}
mkdir -p "$OUT/cands" "$OUT/bench"
if [ -d .whl ] && ! python3 -c "import optuna" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-} PATH=/tmp/site/bin:$PATH
fi
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
CACHE=${CACHE:-$OUT/cache}
{
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  git rev-parse HEAD
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [ -z "${SKIP_TESTS:-}" ]; then
  echo "== (a) CUDA tests (fusion exactness, CUDA graphs, inline CUDA)"
  timeout 300 python3 -m pytest -q -m cuda -p no:cacheprovider tests/proposers/test_fusion_*.py > "$OUT/cuda_tests.log" 2>&1
  echo "cuda tests rc=$?"; grep -E "passed|failed|Error" "$OUT/cuda_tests.log" | tail -8
fi

echo "== (b) generate"
files=()
for p in $PROBLEMS; do files+=("$KB/$p.py"); done
python3 experiments/gpu/fusion_generate.py "$OUT/cands" "${files[@]}" --points "$POINTS" > "$OUT/generated.jsonl" 2> "$OUT/generate.err"
tail -3 "$OUT/generate.err"

echo "== (b) verify and time"
for p in $PROBLEMS; do
  for c in "$OUT"/cands/${p}__p*.py; do
    [ -e "$c" ] || continue
    name=$(basename "$c" .py)
    [ -s "$OUT/bench/$name.json" ] && continue
    timeout 300 python3 -m kswarm.cli bench "$KB/$p.py" "$c" --device cuda --scale default --json \
      --time-cap "$TIME_CAP" --cache-dir "$CACHE" > "$OUT/bench/$name.json" 2> "$OUT/bench/$name.err"
    echo "$name rc=$? $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['status'], d.get('speedup'), d['reason'][:100])" "$OUT/bench/$name.json" 2>/dev/null)"
  done
done

echo "== table (speedup over max(eager, compile); best accepted point per problem)"
python3 - "$OUT" $PROBLEMS <<'PY'
import glob, json, math, os, sys
out, probs = sys.argv[1], sys.argv[2:]
rows, logs = [], []
for p in probs:
    best, seen = None, []
    for f in sorted(glob.glob(f"{out}/bench/{p}__p*.json")):
        try:
            d = json.load(open(f))
        except Exception:
            seen.append(f"{os.path.basename(f)[len(p)+2:-5]}:no-result"); continue
        k = os.path.basename(f)[len(p) + 2:-5]
        seen.append(f"{k}:{d['status'][:8]}:{d.get('speedup') and round(d['speedup'], 3)}")
        if d["status"] == "accepted" and d.get("speedup") and (best is None or d["speedup"] > best[1]["speedup"]):
            best = (k, d)
    if best:
        k, d = best
        rows.append(d["speedup"])
        print(f"{p[:44]:44s} {k:3s} cand {d['candidate_ms']:.4f} eager {d['eager_ms']:.4f} compile {d['compile_ms']:.4f} "
              f"speedup {d['speedup']:.3f}  [{' '.join(seen)}]")
    else:
        rows.append(None)
        print(f"{p[:44]:44s} --  none accepted [{' '.join(seen)}]")
acc = [r for r in rows if r]
deployed = [max(1.0, r) if r else 1.0 for r in rows]
if rows:
    g = math.exp(sum(math.log(x) for x in deployed) / len(deployed))
    print(f"problems {len(rows)}  accepted {len(acc)}  fast_1 {sum(1 for r in acc if r > 1.0)}/{len(rows)}  "
          f"deployed geomean {g:.3f}")
PY
