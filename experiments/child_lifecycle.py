"""What one sandboxed child costs an evaluation on this machine, before and after a change: its start (interpreter,
torch, what it imports while it waits), its ``init`` (the subject's build), and its close; and the wall time of a
whole verify-mode evaluation of a small problem.

Each tree (``--before``, a commit extracted with ``git archive``; ``--after``, a commit or by default the working
tree) is measured in a fresh Python process of its own, alternately (before, after, before, ...), so that drift in
the machine's load hits both. In each process the pool is not retained (as for ``kswarm verify`` and ``kswarm
bench``): every evaluation starts its child, and the first, which also imports the evaluator, is left out. Run from
the repository root:

    .venv/bin/python experiments/child_lifecycle.py --before d4736fc --rounds 3 --evaluations 6

It prints a markdown table: per tree, the median and range over its evaluations of each figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from throughput_before_after import REPO, extract   # a commit's tree, extracted with git archive

PROBLEM = """\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return torch.relu(x) * 2.0


def get_inputs():
    return [torch.randn(64, 64)]


def get_init_inputs():
    return []
"""
CANDIDATE = PROBLEM.replace("class Model(", "class ModelNew(").replace("torch.relu(x) * 2.0", "torch.relu(x).mul_(2.0)")

# Run inside the measured tree: wraps the child's start, requests and close, and evaluates N times.
PROBE = r"""
import json, sys, tempfile, time
from pathlib import Path
from evaluators import sandbox
from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, VerifyPolicy

marks = []
start, request, close = sandbox.Child.start, sandbox.Child.request, sandbox.Child.__exit__

def timed_start(self):
    self._t_start = time.perf_counter()
    return start(self)

def timed_request(self, kind, *args, **kwargs):
    t = time.perf_counter()
    out = request(self, kind, *args, **kwargs)
    if kind in ("ping", "init") and not hasattr(self, "_t_" + kind):
        setattr(self, "_t_" + kind, time.perf_counter() - (self._t_start if kind == "ping" else t))
    return out

def timed_close(self, *exc):
    t = time.perf_counter()
    out = close(self, *exc)
    marks.append({"start_s": getattr(self, "_t_ping", None), "init_s": getattr(self, "_t_init", None),
                  "close_s": time.perf_counter() - t})
    return out

sandbox.Child.start, sandbox.Child.request, sandbox.Child.__exit__ = timed_start, timed_request, timed_close
problem, candidate, n = Path(sys.argv[1]), Path(sys.argv[2]).read_text(), int(sys.argv[3])
cache = tempfile.mkdtemp(prefix="lifecycle-")
rows = []
for i in range(n + 1):
    marks.clear()
    t = time.perf_counter()
    result = evaluate(EvalRequest(problem_path=str(problem), candidate_source=candidate, device="cpu", mode="verify",
                                  verify=VerifyPolicy(seed=i), cache_dir=cache))
    wall = time.perf_counter() - t
    assert result.status.value == "accepted", result.reason
    child = next((m for m in marks if m["init_s"] is not None), {})
    if i:                                  # the first also imports the evaluator's modules: left out
        rows.append({"evaluation_s": wall, **child})
print(json.dumps(rows))
"""


def measure(tree: Path, work: Path, n: int) -> list[dict]:
    problem, candidate = work / "relu_double.py", work / "candidate.py"
    problem.write_text(PROBLEM)
    candidate.write_text(CANDIDATE)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(problem), str(candidate), str(n)], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"the probe failed in {tree}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="the commit to compare with")
    ap.add_argument("--after", default=None, help="a commit to compare (default: the working tree)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--evaluations", type=int, default=6, help="evaluations counted per round and tree")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lifecycle-", dir=REPO / "tmp" if (REPO / "tmp").is_dir() else None))
    try:
        trees = {"before": extract(args.before, work / "before"),
                 "after": REPO if args.after is None else extract(args.after, work / "after")}
        rows: dict[str, list[dict]] = {"before": [], "after": []}
        for r in range(args.rounds):
            for label, tree in trees.items():
                rows[label] += measure(tree, work, args.evaluations)
                sys.stderr.write(f"round {r} {label}: {len(rows[label])} evaluations\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = subprocess.run(["git", "rev-parse", "--short", args.after or "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip() + ("" if args.after else " (working tree)")
    load = os.getloadavg()
    print(f"before {args.before}, after {head}; {args.rounds} rounds x {args.evaluations} evaluations per tree; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.1f} at the end\n")
    print("| tree | child start s | child init s | child close s | evaluation s |\n|---|---|---|---|---|")
    for label, got in rows.items():
        cells = [summary([g[k] for g in got if g.get(k) is not None])
                 for k in ("start_s", "init_s", "close_s", "evaluation_s")]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nmedian [min, max] over the counted evaluations")


if __name__ == "__main__":
    main()
