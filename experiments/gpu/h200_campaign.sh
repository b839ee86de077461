#!/usr/bin/env bash
# The offline-proposer campaign on the GPU host, with one evaluator pinned to each H200 (hw:h200), plus the CUDA
# tests of the Triton templates and timers. Run from the repository root on the GPU host, with Ray and Optuna
# importable (wheels: ../shared/tools/device-wheels.sh, installed as ../shared/GPU.md shows).
#   OUT=/some/dir STEP=start  SECONDS_LEFT=380 bash experiments/gpu/h200_campaign.sh   # tests, then the campaign
#   OUT=/some/dir STEP=resume SECONDS_LEFT=520 bash experiments/gpu/h200_campaign.sh   # carries on where it stopped
# The campaign is stopped with SIGTERM when SECONDS_LEFT run out (it resumes exactly); its own budget is 14 minutes.
set -u
OUT=${OUT:-/tmp/kswarm-h200}
mkdir -p "$OUT"
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
DIR=runs/offline_suite_h200
{
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv
  python3 -c "import torch, triton, ray, optuna; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'triton', triton.__version__, 'ray', ray.__version__, 'optuna', optuna.__version__)"
  nproc
} > "$OUT/env.txt" 2>&1
if [ "${STEP:-start}" = start ]; then
  timeout 180 python3 -m pytest -q -p no:cacheprovider -m cuda tests/proposers/test_triton_templates_match_reference.py \
    tests/evaluators/test_timers.py > "$OUT/cuda_tests.log" 2>&1
  echo "cuda tests rc=$?  $(tail -1 "$OUT/cuda_tests.log")"
  timeout -s TERM "${SECONDS_LEFT:-380}" python3 -m kswarm.cli run experiments/campaigns/offline_suite_h200.toml \
    > "$OUT/run.log" 2>&1
else
  timeout -s TERM "${SECONDS_LEFT:-520}" python3 -m kswarm.cli resume "$DIR" > "$OUT/run.log" 2>&1
fi
echo "campaign rc=$?"
python3 experiments/offline_summary.py "$DIR" > "$OUT/summary.md" 2>&1
python3 -m kswarm.cli status "$DIR" --json > "$OUT/status.json" 2>&1
cp "$DIR/logs/campaign.log" "$OUT/campaign.log" 2>/dev/null
# the directory without the compiler caches, for a resume on a fresh machine and for the record
tar czf "$OUT/campaign_dir.tgz" --exclude="$DIR/cache/inductor" --exclude="$DIR/cache/triton" \
  --exclude="$DIR/cache/torch_extensions" "$DIR" 2>/dev/null
tail -n 30 "$OUT/summary.md"
grep -c " accepted " "$OUT/campaign.log"; grep -v " accepted " "$OUT/campaign.log" | grep -i "search.campaign" | tail -n 12
