"""The Optuna tuner keeps its studies in a journal: a new proposer on the same campaign directory sees the same
trials, tells the trials still pending from the restored state, prunes invalid points and never crashes on a
failed candidate."""
from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from evaluators.result import EvalResult, Status, TimeStats
from problems import make_problem
from proposers import StaticView, get_proposer
from proposers.templates import cpp_rows


def _accepted(ms: float) -> EvalResult:
    return EvalResult(status=Status.ACCEPTED, reason="ok", candidate=TimeStats(ms, ms, ms, 10, ms, ms), speedup=1.0)


@pytest.fixture
def softmax_view(tmp_path):
    p = make_problem(tmp_path, "rowsoftmax", """
        class Model(nn.Module):
            def forward(self, x):
                return torch.softmax(x, dim=-1)
        """, "[torch.randn(4, 33)]")
    return StaticView(p.path, "cpu", cores=2, cache_dir=str(tmp_path / "cache"))


def _trials(campaign, view):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(campaign / "studies" / "cpu.journal")))
    study = optuna.load_study(study_name=f"{view.problem_id}/cpp_rows@cpu", storage=storage)
    return [(t.number, t.state, t.params, t.values) for t in study.get_trials(deepcopy=False)]


def test_study_resumes_with_the_same_trials(tmp_path, softmax_view):
    campaign = tmp_path / "run"
    first = get_proposer("optuna", campaign_dir=str(campaign), seed=1)
    cands = first.propose(softmax_view, 4)
    assert len(cands) == 4 and all(c.backend == "cpp" and "SPACE = " in c.source for c in cands)
    first.observe([(cands[0], _accepted(2.0)), (cands[1], EvalResult(status=Status.COMPILE_ERROR, reason="x"))])
    state = json.loads(json.dumps(first.get_state()))
    before = _trials(campaign, softmax_view)

    resumed = get_proposer("optuna", campaign_dir=str(campaign), seed=1)
    resumed.set_state(state)
    assert _trials(campaign, softmax_view) == before
    resumed.observe([(cands[2], _accepted(1.5)), (cands[3], _accepted(3.0))])
    after = {n: (s, v) for n, s, _, v in _trials(campaign, softmax_view)}
    told = [s for s, _ in after.values() if s != TrialState.PRUNED]
    assert told.count(TrialState.COMPLETE) == 3 and told.count(TrialState.FAIL) == 1
    assert sorted(v[0] for s, v in after.values() if s == TrialState.COMPLETE) == [1.5, 2.0, 3.0]
    more = resumed.propose(softmax_view, 2)
    assert {c.id for c in more}.isdisjoint(c.id for c in cands)


def test_invalid_points_are_pruned_not_raised(tmp_path, softmax_view, monkeypatch):
    def always_invalid(*a, **k):
        raise cpp_rows.InvalidPoint("never renderable")

    monkeypatch.setattr(cpp_rows, "render", always_invalid)
    p = get_proposer("optuna", campaign_dir=str(tmp_path / "run"), max_pruned_per_ask=3)
    assert p.propose(softmax_view, 2) == []
    states = {s for _, s, _, _ in _trials(tmp_path / "run", softmax_view)}
    assert states == {TrialState.PRUNED}


def test_problem_without_a_template_gets_nothing(tmp_path):
    p = make_problem(tmp_path, "noop", """
        class Model(nn.Module):
            def forward(self, x):
                return x + 1
        """, "[torch.randn(2, 2)]")
    tuner = get_proposer("optuna", campaign_dir=str(tmp_path / "run"))
    assert tuner.propose(StaticView(p.path, "cpu"), 3) == []


def test_unknown_sampler_is_refused(tmp_path):
    with pytest.raises(ValueError, match="tpe"):
        get_proposer("optuna", campaign_dir=str(tmp_path), sampler="annealing")
