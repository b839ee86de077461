#!/usr/bin/env bash
# A KernelBench campaign on the GPU host (issues 9 and 10): the offline proposers (rewrites, the Triton fusion
# generator, the Optuna tuner over its space, CUDA graphs) on KernelBench problems at their own (head) sizes, one
# H200, with `nvidia-smi dmon` sampling beside it. Resumable across fresh machines: the campaign directory comes
# back as a tarball, and a later call that is given it (CARRY_IN) resumes it.
# From the repository root on the GPU host, with the KernelBench files copied into the checkout (KB) and the
# wheels of ../shared/tools/device-wheels.sh in .whl/:
#   OUT=$OUT KB=.kb/head SECONDS_LEFT=480 PROBLEMS_GLOB="level2/*Gemm*.py level2/*Matmul*.py" \
#     bash experiments/gpu/h200_kernelbench_campaign.sh
#   OUT=$OUT KB=.kb/head CARRY_IN=.kb/runs/campaign_dir.tgz SECONDS_LEFT=480 bash experiments/gpu/h200_kernelbench_campaign.sh
set -u
OUT=${OUT:-/tmp/kswarm-kb}
KB=${KB:-.kb/head}
NAME=${NAME:-kernelbench_h200}
DIR=runs/$NAME
MINUTES=${MINUTES:-8}
PER_GEN=${PER_GEN:-2}
SLOTS=${VERIFY_SLOTS:-6}          # concurrent build/verify slots on the one GPU (one exclusive timing slot besides)
TIME_CAP=${TIME_CAP:-2.0}
PROBLEMS_GLOB=${PROBLEMS_GLOB:-"level2/*Gemm*.py level2/*Matmul*.py"}
mkdir -p "$OUT" runs
if [ -d .whl ] && ! python3 -c "import ray, optuna" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-} PATH=/tmp/site/bin:$PATH
fi
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
{
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, triton, ray, optuna; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'triton', triton.__version__, 'ray', ray.__version__, 'optuna', optuna.__version__)"
  nproc
  cat .kb/commit 2>/dev/null
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [ -n "${CARRY_IN:-}" ] && [ -f "$CARRY_IN" ]; then
  tar xzf "$CARRY_IN"
fi
if [ ! -f "$DIR/checkpoint.json" ]; then
  campaign=runs/$NAME.toml
  {
    printf '[campaign]\nname = "%s"\nout = "%s"\nseed = 0\n\n' "$NAME" "$NAME"
    printf '[budget]\nmax_evaluations = 5000\nmax_minutes = %s\n\n' "$MINUTES"
    # the globs' files taken in turn (one of each glob, then the next of each), so that a short campaign over
    # levels 1 and 2 reaches problems of both: the feed asks the problems' islands in this order
    python3 - "$KB" $PROBLEMS_GLOB <<'PY'
import glob, itertools, os, sys
def number(path):                    # KernelBench files start with the problem's number
    head = os.path.basename(path).split("_")[0]
    return (int(head) if head.isdigit() else 0, path)
kb = sys.argv[1]
groups = [sorted(glob.glob(os.path.join(kb, g)), key=number) for g in sys.argv[2:]]
for path in (p for row in itertools.zip_longest(*groups) for p in row if p):
    print(f'[[problems]]\npath = "../{path}"\nscale = "default"\n')
PY
    printf '[[targets]]\nhardware = "h200"\nverify_slots = %s\n\n' "$SLOTS"
    printf '[[proposers]]\nkind = "fusion"\nper_generation = %s\n\n' "$PER_GEN"
    printf '[[proposers]]\nkind = "rewrites"\nper_generation = %s\n\n' "$PER_GEN"
    printf '[[proposers]]\nkind = "optuna"\nper_generation = 1\ntemplates = ["triton_fused"]\nsampler = "tpe"\n\n'
    printf '[[proposers]]\nkind = "cuda_graphs"\nper_generation = 1\n\n'
    printf '[timing]\ntime_cap_s = %s\nmin_samples = 10\n' "$TIME_CAP"
  } > "$campaign"
  cp "$campaign" "$OUT/campaign.toml"
  cmd=(python3 -m kswarm.cli run "$campaign" --out "$DIR")
else
  cmd=(python3 -m kswarm.cli resume "$DIR")
fi

nvidia-smi dmon -s u -d 5 > "$OUT/dmon.txt" 2>&1 &
dmon=$!
# the device memory in use beside it (MiB, every 5 s): what the reservations leave unused, or let run out
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 5000 > "$OUT/memory.txt" 2>&1 &
memory=$!
start=$(date +%s)
timeout -s TERM "${SECONDS_LEFT:-480}" "${cmd[@]}" > "$OUT/run.log" 2>&1
echo "campaign rc=$? wall $(( $(date +%s) - start )) s"
kill "$dmon" "$memory" 2>/dev/null

python3 -m kswarm.cli status "$DIR" --json > "$OUT/status.json" 2>&1
python3 experiments/offline_summary.py "$DIR" > "$OUT/summary.md" 2>&1
cp "$DIR/logs/campaign.log" "$OUT/campaign.log" 2>/dev/null
tar czf "$OUT/campaign_dir.tgz" --exclude="$DIR/cache" "$DIR" 2>/dev/null
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
sm = [int(l.split()[1]) for l in open(f"{out}/dmon.txt") if l.strip() and not l.startswith("#") and l.split()[1].isdigit()]
if sm:
    print(f"dmon: {len(sm)} samples of 5 s, SM mean {sum(sm)/len(sm):.1f}%, samples above 10%: {sum(s > 10 for s in sm)}, "
          f"above 50%: {sum(s > 50 for s in sm)}")
mem = [int(l) for l in open(f"{out}/memory.txt") if l.strip().isdigit()]
if mem:
    print(f"device memory used: {len(mem)} samples of 5 s, mean {sum(mem)/len(mem)/1024:.1f} GiB, "
          f"max {max(mem)/1024:.1f} GiB")
try:
    st = json.load(open(f"{out}/status.json"))
    tp = st.get("throughput") or {}
    print("throughput:", {k: tp.get(k) for k in ("evaluations", "wall_s", "evaluations_per_hour",
          "evaluations_per_device_hour", "busy_fraction", "timed_fraction")})
    print("stages (mean s):", {k: v["mean_s"] for k, v in (tp.get("stages") or {}).items()})
    print("statuses:", st.get("statuses") or st.get("status_counts"))
except Exception as exc:
    print("status.json unreadable:", exc)
PY
tail -n 45 "$OUT/summary.md"
