#!/usr/bin/env bash
# The profile of an accepted evaluation on CUDA (evaluators/profiling.py): kswarm bench of an honest Triton softmax
# and of the merged stacked linears at --scale large, printing each result's profile (top CUDA kernels by self
# device time, launches and bytes allocated per call, the roofline on the class's machine model), plus ncu's view
# of the same candidate where ncu exists, to compare the kernel names and DRAM bytes by hand.
# Usage (repository root, on the GPU host): OUT=/some/dir bash experiments/gpu/llm_profile_h200.sh
set -u
OUT=${OUT:-/tmp/kswarm-llm-profile}
mkdir -p "$OUT"
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
CACHE=/tmp/kswarm-cache
nvidia-smi --query-gpu=name,driver_version --format=csv | tee "$OUT/device.txt"
for pair in "experiments/problems/level1/softmax.py tests/fixtures/candidates/gpu/g03_honest_triton_softmax.py" \
            "experiments/problems/level2/stacked_linears.py experiments/candidates/stacked_linears_merged.py"; do
  set -- $pair
  name=$(basename "$2" .py)
  timeout 600 python3 -m kswarm.cli bench "$1" "$2" --device cuda --scale large --cache-dir $CACHE --json \
    > "$OUT/$name.json" 2> "$OUT/$name.err"
  python3 - "$OUT/$name.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d.get("profile") or {}
print(sys.argv[1], d["status"], "speedup", d.get("speedup"))
print("  launches/call", p.get("launches"), "allocated/call", p.get("allocated_bytes"), "error", p.get("profile_error"))
for op in p.get("top_ops", [])[:5]:
    print("  ", round(op["self_device_ms"], 4), "ms", op["calls"], "calls", op["name"][:90])
print("  roofline", json.dumps(p.get("roofline"), sort_keys=True))
PY
done 2>&1 | tee "$OUT/summary.txt"
if command -v ncu >/dev/null; then
  # ncu over a plain script (trusted: our own fixture), for comparison only
  timeout 600 ncu --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum --csv \
    python3 -c "
import torch, importlib.util
spec = importlib.util.spec_from_file_location('c', 'tests/fixtures/candidates/gpu/g03_honest_triton_softmax.py')
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
x = torch.randn(4096, 16384, device='cuda')
for _ in range(3): m.ModelNew()(x)
torch.cuda.synchronize()" > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
  tail -n 12 "$OUT/ncu.csv"
fi
