#!/usr/bin/env bash
# Issue 9's H200 figure: a steady-state campaign over the KernelBench level 1 and 2 problems at their current sizes,
# offline proposers, one evaluator per H200 with VERIFY_SLOTS verify slots and one exclusive timing slot. The GPU's
# SM utilisation is sampled by nvidia-smi dmon (5 s) beside the campaign's own throughput figures, so the two can be
# checked against each other. Run from the repository root on the GPU host, with Ray and Optuna importable
# (wheels: ../shared/tools/device-wheels.sh, installed as ../shared/GPU.md shows):
#   OUT=/some/dir MINUTES=8 bash experiments/gpu/steady_state_h200.sh
# KB (default ../shared/kernelbench/head) is the KernelBench tree; VERIFY_SLOTS (default 2). The campaign stops at
# its MINUTES budget (or by SIGTERM two minutes later; it resumes exactly with `kswarm resume $OUT/run`).
set -u
OUT=${OUT:-/tmp/kswarm-steady}
KB=$(realpath "${KB:-../shared/kernelbench/head}")
MINUTES=${MINUTES:-8}
SLOTS=${VERIFY_SLOTS:-2}
DIR="$OUT/run"
mkdir -p "$OUT"
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
{
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv
  python3 -c "import torch, triton, ray, optuna; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'triton', triton.__version__, 'ray', ray.__version__, 'optuna', optuna.__version__)"
  nproc; git rev-parse --short HEAD
} > "$OUT/env.txt" 2>&1
cat > "$OUT/campaign.toml" <<TOML
[campaign]
name = "steady_h200"
out = "$DIR"
seed = 0

[budget]
max_evaluations = 5000
max_minutes = $MINUTES

[[problems]]
path = "$KB/level1/*.py"

[[problems]]
path = "$KB/level2/*.py"

[[targets]]
hardware = "h200"
verify_slots = $SLOTS

[[proposers]]
kind = "rewrites"
per_generation = 2

[[proposers]]
kind = "optuna"
per_generation = 1
TOML
nvidia-smi dmon -s u -d 5 > "$OUT/dmon.txt" 2>&1 &
DMON=$!
timeout -s TERM $((MINUTES * 60 + 120)) python3 -m search.cli run "$OUT/campaign.toml" > "$OUT/run.log" 2>&1
echo "campaign rc=$?"
kill "$DMON" 2>/dev/null
python3 -m search.cli status "$DIR" --json > "$OUT/status.json" 2>&1
cp "$DIR/logs/campaign.log" "$OUT/campaign.log" 2>/dev/null
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
tp = json.loads((out / "status.json").read_text())["throughput"]
sm = []
for line in (out / "dmon.txt").read_text().splitlines():
    parts = line.split()
    if parts and parts[0].isdigit() and len(parts) > 1 and parts[1].isdigit():
        sm.append(int(parts[1]))
print(f"campaign: {tp['evaluations']} evaluations in {tp['wall_s'] / 60:.1f} min; "
      f"{tp['evaluations_per_device_hour']} per GPU-hour; busy fraction {tp['busy_fraction']}")
for dev, d in tp["devices"].items():
    print(f"  {dev}: {d['evaluations']} evaluations, busy {d['busy_fraction']:.0%}")
print("stages (mean s): " + ", ".join(f"{k} {v['mean_s']}" for k, v in tp["stages"].items()))
if sm:
    print(f"nvidia-smi dmon: {len(sm)} samples, SM mean {sum(sm) / len(sm):.1f}%, "
          f"{sum(1 for x in sm if x > 10)} above 10%, {sum(1 for x in sm if x > 50)} above 50%")
PY
tail -n 5 "$OUT/run.log"
