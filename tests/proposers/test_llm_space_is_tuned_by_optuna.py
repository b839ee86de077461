"""The LLM writes the structure, Optuna sets the numbers: an accepted candidate with a SPACE manifest is tuned
without another request, each point a candidate whose parent is the LLM's, its time told back to the study, up to
``tune_trials`` points; the tuner's open trials survive a save and restore."""
from __future__ import annotations

from pathlib import Path

from evaluators.result import EvalResult, Status, TimeStats
from llm_loopback import LEAKY_RELU, Loopback, fenced, leaky_module, proposer
from proposers.base import StaticView

VIEW = StaticView(LEAKY_RELU)
SPACED = "CHUNK = 4\nSPACE = {'CHUNK': [1, 2, 4, 8]}\n" + leaky_module(
    "torch.cat([torch.where(c > 0, c, c * self.negative_slope) for c in x.chunk(CHUNK)])")


def _accepted(ms: float) -> EvalResult:
    return EvalResult(status=Status.ACCEPTED, reason="ok", candidate=TimeStats(median_ms=ms, ci_low_ms=ms * 0.9,
                                                                                 ci_high_ms=ms * 1.1, count=10,
                                                                                 min_ms=ms * 0.8, max_ms=ms * 1.2))


def test_space_points_are_proposed_and_told(tmp_path: Path) -> None:
    with Loopback(lambda role, prompt, body: fenced(SPACED)) as lb:
        p = proposer(lb, tmp_path, concurrency=1, roles=("coder",), tune_trials=3)
        [llm] = p.propose(VIEW, 1)
        assert llm.params["space"] == {"CHUNK": [1, 2, 4, 8]}
        p.observe([(llm, _accepted(2.0))])
        sent = len(lb.attempts)
        tuned = p.propose(VIEW, 2)
        state = p.get_state()
        q = proposer(lb, tmp_path, concurrency=1, roles=("coder",), tune_trials=3)
        q.set_state(state)
        q.observe([(c, _accepted(1.0 + i)) for i, c in enumerate(tuned)])
        more = q.propose(VIEW, 5)
        assert len(lb.attempts) >= sent
    assert len(tuned) == 2 and all(c.parent_ids == (llm.id,) for c in tuned)
    assert all(c.params["llm"]["role"] == "tuner" and "CHUNK" in c.params["llm"]["point"] for c in tuned)
    for c in tuned:
        assert f"CHUNK = {c.params['llm']['point']['CHUNK']}\n" in c.source
    tuner_more = [c for c in more if c.params["llm"]["role"] == "tuner"]
    assert len(tuner_more) <= 1                                    # three trials in all for the family
    import optuna
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "studies" / "llm-cpu.journal")))
    [summary] = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    told = sorted(t.value for t in study.trials if t.value is not None)
    assert told[:2] == [1.0, 2.0]                                  # the restored proposer told the first two points
