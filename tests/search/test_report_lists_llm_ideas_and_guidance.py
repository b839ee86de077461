"""The report and the live view say which candidates an LLM wrote and which of its ideas came from a person."""
import json

import pyarrow as pa

from search import report_data


def _table(rows):
    return pa.Table.from_pylist([{"problem_id": p, "hardware": "cpu", "status": s, "speedup": sp,
                                  "params": json.dumps(params), "proposer": prop} for p, s, sp, params, prop in rows])


def test_llm_rows_carry_their_role_idea_and_guidance():
    t = _table([
        ("relu", "accepted", 1.2, {"llm": {"role": "coder", "idea": "fuse  the\nbias", "from_guidance": True}}, "llm"),
        ("relu", "mismatch", None, {"llm": {"role": "fixer", "idea": "", "from_guidance": False}}, "llm"),
        ("relu", "accepted", 2.0, {"rewrites": ["algebraic"]}, "rewrites"),
    ])
    ideas = report_data.llm_ideas(t).to_pylist()
    assert [(r["role"], r["from_guidance"], r["idea"]) for r in ideas] == [("coder", True, "fuse the bias"),
                                                                            ("fixer", False, "")]
    assert report_data.llm_counts(t) == {"candidates": 2, "from_guidance": 1}


def test_a_campaign_without_llm_rows_has_none():
    t = _table([("relu", "accepted", 2.0, {"rewrites": ["algebraic"]}, "rewrites")])
    assert report_data.llm_ideas(t).num_rows == 0
    assert report_data.llm_counts(t) == {"candidates": 0, "from_guidance": 0}


def test_the_campaigns_spend_comes_from_its_ledger(tmp_path):
    from search.campaign import _llm_spend
    assert _llm_spend(tmp_path) == {}
    (tmp_path / "llm").mkdir()
    (tmp_path / "llm" / "usage.jsonl").write_text(
        json.dumps({"tokens": 120, "cost_usd": 0.25}) + "\n" + json.dumps({"tokens": 30, "cost_usd": 0.5}) + "\n"
        + '{"tokens": 99, "cost')    # a line cut by a kill mid-write is not counted
    assert _llm_spend(tmp_path) == {"tokens": 150, "cost_usd": 0.75}


def test_the_spend_follows_the_ledger_as_it_grows(tmp_path):
    import os
    from search.campaign import _llm_spend
    ledger = tmp_path / "llm" / "usage.jsonl"
    ledger.parent.mkdir()
    ledger.write_text(json.dumps({"tokens": 10, "cost_usd": 0.1}) + "\n")
    assert _llm_spend(tmp_path) == {"tokens": 10, "cost_usd": 0.1}
    with open(ledger, "a") as f:
        f.write(json.dumps({"tokens": 5, "cost_usd": 0.2}) + "\n")
    os.utime(ledger, ns=(1, 2))     # a later read sees the new size whatever the clock's resolution
    assert _llm_spend(tmp_path) == {"tokens": 15, "cost_usd": 0.3}
