"""A real campaign on a three-node local Ray survives a few faults injected at random moments (driver SIGKILLs, one
between an Optuna ask and its tell, a killed evaluator actor, a removed worker node, a truncated checkpoint and a
truncated journal part), resuming after each: every proposed candidate ends in the population exactly once with a
final status, nothing stays in flight, no Optuna trial is left RUNNING and every damage is reported. The harness is
``experiments/chaos.py`` (its full run: ``experiments/results/2026-12-02-chaos.md``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray]
REPO = Path(__file__).resolve().parents[2]


def test_a_few_faults_at_random_moments_lose_no_candidate(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "experiments.chaos", "--faults", "6", "--evaluations", "80",
                           "--seed", "11", "--max-seconds", "150", "--gap", "0.5", "2", "--json",
                           "--out", str(tmp_path / "chaos")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=480)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["faults_injected"] >= 4, summary          # the campaign outlasted most of the faults
    assert sum(1 for n in summary["by_kind"].values() if n) >= 4, summary
    assert summary["lost"] == 0 and summary["duplicates"] == 0 and summary["not_final"] == 0, summary
    assert summary["left_in_flight"] == 0 and summary["optuna_running_at_end"] == 0, summary
    assert summary["faults_survived"] == summary["faults_injected"], summary
    assert summary["proofs_hold"] and proc.returncode == 0, summary
