"""Every Optuna trial a campaign asks is closed, whatever stops the driver: a result the journal holds but the last
checkpoint does not (the driver died between the append and the checkpoint) is told on resume, and work withdrawn
when the time budget runs out is told as not run (FAIL), so no trial is left RUNNING. Real campaign, real Optuna
proposer and journal; a cheap evaluate function in-process instead of the sandboxed evaluator."""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from evaluators.policy import EvalRequest
from evaluators.result import EvalResult, Status, TimeStats
from proposers.base import Candidate
from search.campaign import Campaign
from search.checkpoint import load_checkpoint
from search.config import load_config
from search.feed import Pending
from search.local_dispatch import LocalDispatcher
from search.population import Population, read_population
from search.schema import Placement, row_from_result

REPO = Path(__file__).resolve().parents[2]


def cheap(req: EvalRequest, *, timing_slot=None) -> EvalResult:
    """Accepted, with a time that depends only on the source (so a replayed row can be checked against it)."""
    time.sleep(0.05 if "SLOW" not in req.candidate_source else 0.0)
    ms = 1.0 + int(hashlib.sha256(req.candidate_source.encode()).hexdigest()[:6], 16) / 2**24
    return EvalResult(status=Status.ACCEPTED, reason="cheap", device=req.device,
                      candidate=TimeStats(ms, ms * 0.99, ms * 1.01, 10, ms * 0.98, ms * 1.02), speedup=1.0 / ms)


def slow(req: EvalRequest, *, timing_slot=None) -> EvalResult:
    # longer than the budget and one poll of the loop: the budget runs out while the first one runs, the rest queued
    time.sleep(3.0)
    return cheap(req)


def campaign(tmp: Path, evaluations: int, minutes: float) -> Path:
    shutil.copy(REPO / "experiments" / "problems" / "level1" / "softmax.py", tmp / "softmax.py")
    toml = tmp / "c.toml"
    toml.write_text(f'[campaign]\nname = "trials"\nout = "run"\nseed = 3\n[budget]\nmax_evaluations = {evaluations}\n'
                    f'max_minutes = {minutes}\n[[problems]]\npath = "softmax.py"\n[[targets]]\nhardware = "cpu"\n'
                    '[[proposers]]\nkind = "optuna"\nper_generation = 4\n')
    return toml


def trials(out: Path) -> dict[int, optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(out / "studies" / "cpu.journal")))
    (summary,) = optuna.get_all_study_summaries(storage)
    return {t.number: t for t in optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()}


def test_results_recorded_after_the_last_checkpoint_are_told_on_resume(tmp_path: Path) -> None:
    cfg, out = load_config(campaign(tmp_path, 12, 5)), tmp_path / "run"
    factory = lambda cfg: LocalDispatcher({"cpu": 1}, cheap)  # noqa: E731

    def stop(p) -> None:
        if p.done >= 3:
            raise KeyboardInterrupt("stopped by the test")

    with pytest.raises(KeyboardInterrupt):
        Campaign(cfg, out, local=True, dispatcher_factory=factory, on_progress=stop).run()
    ck = load_checkpoint(out)
    assert ck.in_flight, "the stop left work in flight"
    # What a driver killed between the append and the checkpoint leaves: the rows in the journal, the checkpoint
    # (and the proposer state in it) from before, the trials RUNNING.
    refs = json.loads(json.dumps(ck.proposer_states["optuna@cpu"]["pending"]))
    recorded = {}
    with Population.open(out, writer=True) as pop:
        for key, payload in ck.in_flight.items():
            item = Pending.from_dict(payload)
            result = cheap(EvalRequest(problem_path=item.island.problem_path, candidate_source=item.candidate.source))
            pop.append([row_from_result(result, item.candidate, Placement(
                campaign=cfg.campaign.name, problem_path=item.island.problem_path, generation=item.generation,
                island=item.island.name))])
            recorded[item.candidate.id] = result.candidate.median_ms
    numbers = {r[2]: recorded[cid] for cid, rs in refs.items() if cid in recorded for r in rs}
    assert numbers and all(trials(out)[n].state == TrialState.RUNNING for n in numbers)

    Campaign(cfg, out, local=True, dispatcher_factory=factory).run()
    after = trials(out)
    assert [n for n, t in after.items() if t.state == TrialState.RUNNING] == []
    for n, ms in numbers.items():   # told the value the journal holds, not failed as an orphan
        assert after[n].state == TrialState.COMPLETE and after[n].value == pytest.approx(ms), n
    keys = read_population(out).column("eval_key").to_pylist()
    assert len(keys) == len(set(keys)) == 12


def test_work_withdrawn_at_the_time_budget_closes_its_trials(tmp_path: Path) -> None:
    cfg, out = load_config(campaign(tmp_path, 40, 0.02)), tmp_path / "run"
    Campaign(cfg, out, local=True, dispatcher_factory=lambda cfg: LocalDispatcher({"cpu": 1}, slow)).run()
    withdrawn = [json.loads(line) for line in (out / "logs" / "not_started.jsonl").read_text().splitlines()]
    assert withdrawn, "1.2 s of budget cannot start four 3 s candidates on one slot"
    ck_pending = load_checkpoint(out).proposer_states["optuna@cpu"]["pending"]
    assert not set(ck_pending) & {w["candidate_id"] for w in withdrawn}
    states = [t.state for t in trials(out).values()]
    assert TrialState.RUNNING not in states
    done = read_population(out).num_rows
    # each withdrawn candidate's trial failed; each evaluated one completed (pruned ones never became candidates)
    assert states.count(TrialState.COMPLETE) == done and states.count(TrialState.FAIL) >= len(withdrawn)
    assert not (set(read_population(out).column("candidate_id").to_pylist())
                & {w["candidate_id"] for w in withdrawn})


def test_a_relative_campaign_dir_gives_optuna_an_absolute_journal(tmp_path: Path, monkeypatch) -> None:
    """Optuna's journal lock is a symlink to the journal's path as given: a relative one dangles, so a lock left by a
    driver killed while writing is never released and the resumed driver spins on it (seen in the chaos run with
    ``kswarm resume runs/x``-style relative directories)."""
    from search.feed import build_proposers
    cfg = load_config(campaign(tmp_path, 4, 5))
    monkeypatch.chdir(tmp_path)
    proposers = build_proposers(cfg, Path("run"))
    tuner = next(p for spec, p in proposers if spec.kind == "optuna")
    assert tuner.journal_path("cpu").is_absolute()
    assert tuner.journal_path("cpu") == (tmp_path / "run" / "studies" / "cpu.journal").resolve()
