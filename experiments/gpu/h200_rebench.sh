#!/usr/bin/env bash
# After the H200 campaign (experiments/gpu/h200_campaign.sh): each exported kernel named on the command line is
# verified and timed again by `kswarm bench` in fresh processes, on fresh inputs, with its own fresh baselines.
#   OUT=/some/dir bash experiments/gpu/h200_rebench.sh level2/gemm_sum level2/stacked_linears ...
set -u
OUT=${OUT:-/tmp/kswarm-h200}
mkdir -p "$OUT"
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
EXPORT=runs/offline_suite_h200/export
CACHE=$(mktemp -d /tmp/kswarm-rebench-XXXX)
for lp in "$@"; do
  pid=${lp#*/}
  timeout 150 python3 -m kswarm.cli bench "experiments/problems/$lp.py" "$EXPORT/${pid}__h200.py" --device cuda \
    --scale large --cache-dir "$CACHE" --json > "$OUT/last.json" 2> "$OUT/last.err"
  rc=$?
  python3 - "$pid" "$rc" "$OUT" <<'PY'
import json, sys
pid, rc, out = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    d = json.load(open(f"{out}/last.json"))
except Exception as e:
    print(f"{pid} rc={rc} no result ({e})"); sys.exit()
d["name"] = pid
open(f"{out}/rebench.jsonl", "a").write(json.dumps(d) + "\n")
t = lambda k: d.get(k + '_ms')
print(f"{pid} rc={rc} {d['status']} speedup {d.get('speedup')} CI {d.get('speedup_ci')} "
      f"cand {t('candidate')} eager {t('eager')} compile {t('compile')} roofline {(d.get('profile') or {}).get('roofline_fraction')} | {d['reason'][:120]}")
PY
done
