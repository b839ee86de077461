"""Throughput of one evaluation: N evaluations of the same candidate in one process, as a campaign's evaluator makes
them (rounds=1: the node's baseline record, a timing slot held around timing), with the wall time and the seconds
per stage of each. ``--repo`` imports the evaluator from another checkout (an older commit, for a before/after).

    python experiments/bench_repeat_stages.py [--runs 3] [--repo DIR] [--time-cap 10] [--cache-dir DIR]

Prints one JSON line per evaluation: wall_s, stage_s (where the evaluator reports it), status, speedup and CI.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import sys
import tempfile
import time
from pathlib import Path

PROBLEM = "experiments/problems/level2/stacked_linears.py"
CANDIDATE = "experiments/candidates/stacked_linears_merged.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--time-cap", type=float, default=10.0)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    here = Path(__file__).resolve().parents[1]
    sys.path.insert(0, args.repo)
    from evaluators.pipeline import evaluate
    from evaluators.policy import EvalRequest, TimingPolicy

    cache = args.cache_dir or tempfile.mkdtemp(prefix="kswarm-stages-")
    source = (here / CANDIDATE).read_text()
    slot = "timing_slot" in inspect.signature(evaluate).parameters
    for i in range(args.runs):
        req = EvalRequest(problem_path=str(here / PROBLEM), candidate_source=source, device="cpu", mode="bench",
                          timing=TimingPolicy(time_cap_s=args.time_cap, rounds=1), cache_dir=cache)
        t0 = time.monotonic()
        r = evaluate(req, timing_slot=contextlib.nullcontext()) if slot else evaluate(req)
        wall = time.monotonic() - t0
        print(json.dumps({"run": i + 1, "repo": args.repo, "wall_s": round(wall, 2), "status": r.status.value,
                          "speedup": r.speedup, "speedup_ci": r.speedup_ci,
                          "stage_s": getattr(r, "stage_s", None)}), flush=True)


if __name__ == "__main__":
    main()
