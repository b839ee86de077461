"""Repeats the checks whose failures are races, and counts what each run gave: the two worker-thread fixtures
(static=warn, so the runtime checks decide) with the check that caught them, and the sandbox's escape cases.

    python experiments/containment_repeat.py [RUNS] > experiments/results/<date>-containment-repeat.md
"""
from __future__ import annotations

import collections
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.catalog import evaluate_fixture, load_fixtures  # noqa: E402

FIXTURES = ("c07_background_thread", "c07_worker_thread_timed_calls")
SANDBOX_CASES = "daemon or waiting or exits_at_once"


def caught_by(reason: str) -> str:
    if "when forward returned" in reason and "thread(s)" in reason:
        return "thread census at return"
    if "after forward returned" in reason:
        return "output changed after return"
    if "left" in reason and "thread(s)" in reason:
        return "thread census in the audit"
    return reason[:60]


def main(runs: int) -> None:
    cache = REPO / "tmp" / "containment-cache"
    tally: collections.Counter = collections.Counter()
    fixtures = [f for f in load_fixtures() if f.path.stem in FIXTURES]
    t0 = time.time()
    for _ in range(runs):
        for fx in fixtures:
            r = evaluate_fixture(fx, "warn", str(cache)).result
            tally[(fx.path.stem, r.status.value, caught_by(r.reason))] += 1
    sandbox = collections.Counter()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    for _ in range(runs):
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/evaluators/test_sandbox_contains_the_child.py", "-k", SANDBOX_CASES],
                           cwd=REPO, env=env, capture_output=True, text=True)
        sandbox[p.stdout.strip().splitlines()[-1].split(" in ")[0] if p.stdout.strip() else f"rc {p.returncode}"] += 1
    print(f"# Containment and thread checks, repeated\n\n- command: `python experiments/containment_repeat.py {runs}`")
    print(f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU only; "
          f"{time.time() - t0:.0f} s\n")
    print("| fixture (static=warn) | status | caught by | runs |\n|---|---|---|---:|")
    for (name, status, how), n in sorted(tally.items()):
        print(f"| {name} | {status} | {how} | {n} |")
    print(f"\nSandbox escape cases (`-k \"{SANDBOX_CASES}\"`: the daemon that leaves the session, the process that "
          "waits for the child to exit, the daemon of a child that exits at once), one pytest run each:\n")
    print("| pytest result | runs |\n|---|---:|")
    for line, n in sorted(sandbox.items()):
        print(f"| {line} | {n} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
