"""Proposer state survives get_state -> JSON -> set_state, and a resumed proposer proposes nothing twice."""
from __future__ import annotations

import json
import pathlib

from evaluators.result import EvalResult, Status
from proposers import StaticView, get_proposer

SUITE = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "problems"


def test_resumed_rewrites_proposer_does_not_repeat(tmp_path):
    view = StaticView(str(SUITE / "level2" / "stacked_linears.py"), "cpu")
    first = get_proposer("rewrites")
    batch1 = first.propose(view, 3)
    assert len(batch1) == 3
    state = json.loads(json.dumps(first.get_state()))

    resumed = get_proposer("rewrites")
    resumed.set_state(state)
    assert resumed.get_state() == state
    batch2 = resumed.propose(view, 100)
    assert not {c.id for c in batch1} & {c.id for c in batch2}
    assert batch2, "the rest of the recipes are still proposed"
    assert resumed.propose(view, 100) == []


def test_rejected_eager_rewrite_suppresses_its_compiled_forms():
    view = StaticView(str(SUITE / "level2" / "stacked_linears.py"), "cpu")
    p = get_proposer("rewrites")
    first = p.propose(view, 1)[0]
    assert "compile" not in first.params
    p.observe([(first, EvalResult(status=Status.MISMATCH, reason="test"))])
    rest = p.propose(view, 100)
    assert all(c.params["rewrites"][:-1] != first.params["rewrites"] for c in rest if "compile" in c.params)
    state = json.loads(json.dumps(p.get_state()))
    assert state["rejected"]


def test_files_proposer_state_round_trips(tmp_path):
    (tmp_path / "stacked_linears__mine.py").write_text("# backend: cpp\nclass ModelNew: pass\n")
    view = StaticView(str(SUITE / "level2" / "stacked_linears.py"), "cpu")
    p = get_proposer("files", paths=str(tmp_path))
    got = p.propose(view, 5)
    assert len(got) == 1 and got[0].backend == "cpp"
    q = get_proposer("files", paths=str(tmp_path))
    q.set_state(json.loads(json.dumps(p.get_state())))
    assert q.propose(view, 5) == []
