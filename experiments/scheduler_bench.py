"""Scheduler speed: a null evaluator on many simulated devices, through the pure scheduler and the in-process adapter.

- ``pure``: ``search.scheduler.Scheduler`` driven by a loop that plays the devices: every started evaluation answers
  at once with a prebuilt result. What it measures is the policy's own cost per evaluation (submit, assign, done,
  take), the ceiling of any adapter.
- ``local``: ``search.local_dispatch.LocalDispatcher`` with a null evaluate function, one thread per evaluation, the
  caller polling as the campaign does. Its cost adds the threads and the queue between them and the caller.

Each simulated node has one device with ``--slots`` verify slots. Run from the repository root:

    .venv/bin/python experiments/scheduler_bench.py --nodes 16,64 --evaluations 20000 --repeats 5

It prints a markdown table: evaluations per second, mean and min-max over the repeats.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evaluators.policy import EvalRequest  # noqa: E402
from evaluators.result import EvalResult, Status  # noqa: E402
from search.local_dispatch import LocalDispatcher  # noqa: E402
from search.scheduler import Scheduler  # noqa: E402

NULL = EvalResult(status=Status.ACCEPTED, reason="null")
REQ = EvalRequest(problem_path="p.py", candidate_source="")


def null_evaluate(req: EvalRequest, *, timing_slot=None) -> EvalResult:
    return NULL


def pure(nodes: int, slots: int, n: int) -> float:
    """Evaluations per second through the bare state machine, with the submissions kept ahead of the devices as
    the campaign keeps them (twice the slots)."""
    s = Scheduler(["sim"], timeout_s=60.0, retries=2)
    for i in range(nodes):
        s.add_device(f"sim:{i}", "sim", slots)
    ahead = 2 * nodes * slots
    submitted = delivered = 0
    start = time.perf_counter()
    while delivered < n:
        now = time.perf_counter()
        while submitted < n and submitted - delivered < ahead:
            s.submit(f"k{submitted}", REQ, "sim", submitted % 3, now)
            submitted += 1
        for ticket in s.assign(now):
            s.done(ticket.id, NULL, now)
        s.expire(now)
        delivered += len(s.take())
    return n / (time.perf_counter() - start)


def local(nodes: int, slots: int, n: int) -> float:
    """Evaluations per second through the in-process adapter, polled as the campaign polls it."""
    d = LocalDispatcher({"sim": nodes}, null_evaluate, slots=slots, timeout_s=60.0)
    ahead = 2 * nodes * slots
    submitted = delivered = 0
    start = time.perf_counter()
    while delivered < n:
        while submitted < n and len(d.in_flight()) < ahead:
            d.submit(f"k{submitted}", REQ, "sim", priority=submitted % 3)
            submitted += 1
        delivered += len(d.poll(timeout=1.0))
    rate = n / (time.perf_counter() - start)
    d.shutdown()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", default="16,64", help="comma-separated numbers of simulated nodes")
    ap.add_argument("--slots", type=int, default=2, help="verify slots per device")
    ap.add_argument("--evaluations", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    sys.stdout.write(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                     f"Python {platform.python_version()}; commit {commit}; {args.evaluations} evaluations per run, "
                     f"{args.slots} slots per device, {args.repeats} repeats\n\n")
    sys.stdout.write("| adapter | nodes | evaluations/s mean | min | max |\n|---|---|---|---|---|\n")
    for nodes in (int(x) for x in args.nodes.split(",")):
        for name, fn in (("pure", pure), ("local", local)):
            rates = [fn(nodes, args.slots, args.evaluations) for _ in range(args.repeats)]
            sys.stdout.write(f"| {name} | {nodes} | {statistics.mean(rates):,.0f} | {min(rates):,.0f} | "
                             f"{max(rates):,.0f} |\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
