"""A driver SIGKILLed between an Optuna ask and the checkpoint that would record it leaves trials RUNNING in the
study's journal. On resume they are told FAIL (constant-liar TPE would count them as pending forever); trials the
checkpoint does record stay open until their results are told, and another optuna proposer's trials are left
alone. After the resumed results are told, no trial is left running."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from evaluators.result import EvalResult, Status, TimeStats
from proposers import StaticView, get_proposer
from proposers.base import Candidate

WORKER = Path(__file__).with_name("optuna_worker.py")
PROBLEM = """import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=-1)


def get_inputs():
    return [torch.randn(4, 33)]


def get_init_inputs():
    return []
"""


def accepted(ms: float) -> EvalResult:
    return EvalResult(status=Status.ACCEPTED, reason="ok", candidate=TimeStats(ms, ms, ms, 10, ms, ms), speedup=1.0)


def trials(campaign: Path) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(campaign / "studies" / "cpu.journal")))
    return [t for s in optuna.get_all_study_summaries(storage)
            for t in optuna.load_study(study_name=s.study_name, storage=storage).get_trials(deepcopy=False)]


def running(campaign: Path) -> list[int]:
    return sorted(t.number for t in trials(campaign) if t.state == TrialState.RUNNING)


@pytest.fixture
def problem(tmp_path: Path) -> Path:
    path = tmp_path / "rowsoftmax.py"
    path.write_text(PROBLEM)
    return path


def run_and_kill(campaign: Path, problem: Path, state_in: Path | None, checkpoint: Path) -> None:
    ready = campaign.parent / "ready"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(WORKER), str(campaign), str(problem),
                             str(state_in) if state_in else "-", str(checkpoint), str(ready)],
                            cwd=Path(__file__).resolve().parents[2], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, f"the worker exited with {proc.returncode} before asking"
            assert time.monotonic() < deadline, "the worker did not ask in time"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_trials_asked_after_the_last_checkpoint_are_failed_on_resume(tmp_path: Path, problem: Path) -> None:
    campaign, first, second = tmp_path / "run", tmp_path / "first.json", tmp_path / "second.json"
    run_and_kill(campaign, problem, None, first)
    run_and_kill(campaign, problem, first, second)              # killed again after resuming from the first
    saved = json.loads(second.read_text())
    recorded = {r[2] for refs in saved["state"]["pending"].values() for r in refs}
    orphans = set(running(campaign)) - recorded
    assert len(orphans) >= 2 and len(recorded) >= 4     # the first run's two and the second's (and repeats)
    resumed = get_proposer("optuna", campaign_dir=str(campaign), seed=1)
    resumed.set_state(saved["state"])
    assert set(running(campaign)) == recorded
    assert {t.number for t in trials(campaign) if t.state == TrialState.FAIL} >= orphans
    by_id = {c["id"]: c for c in json.loads(first.read_text())["in_flight"] + saved["in_flight"]}
    resumed.observe([(Candidate.from_dict(by_id[cid]), accepted(2.0)) for cid in saved["state"]["pending"]])
    assert running(campaign) == []

    view = StaticView(str(problem), "cpu", cores=2, cache_dir=str(campaign / "cache"))
    assert len(resumed.propose(view, 1)) == 1 and len(running(campaign)) == 1   # the study carries on


def test_a_fresh_driver_without_a_checkpoint_fails_every_orphan_when_it_opens_the_study(tmp_path: Path,
                                                                                         problem: Path) -> None:
    campaign = tmp_path / "run"
    run_and_kill(campaign, problem, None, tmp_path / "lost.json")   # as if the checkpoint never reached disk
    fresh = get_proposer("optuna", campaign_dir=str(campaign), seed=1)
    view = StaticView(str(problem), "cpu", cores=2, cache_dir=str(campaign / "cache"))
    fresh.propose(view, 1)
    assert len(running(campaign)) == 1                             # only the trial just asked


def test_another_optuna_proposers_open_trials_are_left_alone(tmp_path: Path, problem: Path) -> None:
    campaign = tmp_path / "run"
    view = StaticView(str(problem), "cpu", cores=2, cache_dir=str(campaign / "cache"))
    tpe = get_proposer("optuna", campaign_dir=str(campaign), seed=1)
    rnd = get_proposer("optuna", campaign_dir=str(campaign), seed=1, sampler="random")
    tpe.propose(view, 2)
    theirs = rnd.propose(view, 2)
    assert len(running(campaign)) == 4

    resumed = get_proposer("optuna", campaign_dir=str(campaign), seed=1)
    resumed.set_state(json.loads(json.dumps(tpe.get_state())))
    assert len(running(campaign)) == 4
    rnd.observe([(c, accepted(1.0)) for c in theirs])
    assert len(running(campaign)) == 2
