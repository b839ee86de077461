"""Chaos: a real campaign on a local multi-node Ray, faults injected at random moments, resumed after each, then the
proofs that nothing was lost.

The cluster is a ``ray.cluster_utils.Cluster`` of this process: a head (CPU for the driver, no device) and two worker
nodes offering ``hw:cpu``. The campaign (``search.campaign.Campaign`` through the Ray adapter, ``cluster.dispatch``)
runs in a driver subprocess, ``python -m experiments.chaos drive``, over the softmax problem of level1 with the
``files`` and ``optuna`` proposers; the evaluator actors run ``evaluate`` below, a cheap function (a short sleep and
a verdict drawn from the candidate) instead of the sandboxed pipeline, so that the faults, not the evaluations, take
the time. Faults, in a shuffled rotation, at most ``--faults`` of them within ``--max-seconds``:

- ``driver``: SIGKILL the driver's session, then resume;
- ``optuna``: SIGKILL the driver while an Optuna trial it asked is RUNNING (between ask and tell), then resume;
- ``actor``: SIGKILL the process of an evaluator actor (its work is sent again);
- ``node``: remove a worker node offering the target class, with its actor and work, then add a fresh node;
- ``checkpoint``: SIGKILL the driver, truncate ``checkpoint.json``, resume (the backup copy must be used, reported);
- ``part``: SIGKILL the driver, truncate the newest population part, resume (the part must be set aside, reported,
  and the other parts read). Its bytes are gone: its evaluations are counted apart, not as lost.

Then it proves: each evaluation is in the journal once; every candidate any proposer's final state says it proposed
is in the population with a final status (or named in ``logs/not_started.jsonl``, or in a part the ``part`` fault
damaged); nothing is left in flight; no Optuna trial is RUNNING; every damage was reported. Run from the repository
root:

    .venv/bin/python -m experiments.chaos --faults 24 --evaluations 160 --seed 1 --max-seconds 900

It prints a summary (``--json`` for one JSON line) and exits 1 when a proof fails.
"""
from __future__ import annotations

import hashlib
import os
import random
import time

from evaluators.policy import EvalRequest
from evaluators.result import EvalResult, Status, TimeStats

def evaluate(req: EvalRequest) -> EvalResult:
    """The actors' evaluate function: 0.2-0.6 s of work, then a verdict that depends only on the candidate."""
    h = int(hashlib.sha256(req.candidate_source.encode()).hexdigest()[:8], 16)
    time.sleep(0.2 + (h % 400) / 1000)
    if h % 7 == 0:
        return EvalResult(status=Status.MISMATCH, reason="simulated mismatch", device=req.device,
                          provenance={"pid": os.getpid()})
    ms = 0.5 + (h % 1000) / 1000
    return EvalResult(status=Status.ACCEPTED, reason="simulated", device=req.device, speedup=1.0 / ms,
                      candidate=TimeStats(ms, ms * 0.98, ms * 1.02, 20, ms * 0.97, ms * 1.05),
                      provenance={"pid": os.getpid()})


def main() -> None:
    import argparse
    import json
    import sys

    from experiments.chaos_harness import Chaos, drive
    if len(sys.argv) > 1 and sys.argv[1] == "drive":
        drive(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faults", type=int, default=12)
    ap.add_argument("--evaluations", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--gap", type=float, nargs=2, default=(1.0, 6.0), help="seconds between faults: min max")
    ap.add_argument("--out", default="")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    summary = Chaos(args.out or None, args.evaluations, random.Random(args.seed), args.faults, args.max_seconds,
                    tuple(args.gap)).run()
    if args.json:
        sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    else:
        for k, v in summary.items():
            sys.stdout.write(f"{k}: {v}\n")
    sys.exit(0 if summary["proofs_hold"] else 1)


if __name__ == "__main__":
    main()
