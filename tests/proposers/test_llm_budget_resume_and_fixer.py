"""The proposer's bookkeeping against the loopback server: the token and the cost budget stop it; a fresh
proposer restored from a saved state replays the cached answers and sends nothing; a rejected candidate goes to
the fixer with its reason and source, for a bounded number of rounds; a reply with no module goes to the fixer at
once; with no key the proposer is off, saying so in one line."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from evaluators.result import EvalResult, Status
from llm_loopback import IDEAS, LEAKY_RELU, Loopback, fenced, leaky_module, proposer
from proposers.base import StaticView
from proposers.llm import LLMProposer
from proposers.llm.store import Ledger

VIEW = StaticView(LEAKY_RELU)
BROKEN = leaky_module("fast_leaky(x, self.negative_slope)", header="from torch import fast_leaky")
FIXED = leaky_module("torch.where(x > 0, x, x * self.negative_slope)")


def _code(role: str, prompt: str, body: dict) -> str:
    if role == "ideator":
        return IDEAS
    n = int(prompt.split("(attempt ")[-1].split(")")[0]) if role == "coder" else 0
    if n == 2:
        time.sleep(1.0)                  # the second coder answers late: it is still in flight when propose returns
    return fenced(leaky_module(f"torch.where(x > 0, x, x * self.negative_slope) + 0 * {n}"))


@pytest.mark.parametrize("limit, provider", [("tokens", "anthropic"), ("cost", "anthropic"), ("tokens", "openai"),
                                             ("cost", "openai")])
def test_budget_stops_the_proposer(tmp_path: Path, limit: str, provider: str, caplog) -> None:
    budget = {"budget_tokens": 1} if limit == "tokens" else {"budget_cost_usd": 1e-9}
    prices = {"price_input_per_mtok": 0.5, "price_output_per_mtok": 1.0} if provider == "openai" else {}
    with Loopback(_code) as lb:
        p = proposer(lb, tmp_path, provider, concurrency=1, roles=("coder",), **budget, **prices)
        with caplog.at_level(logging.WARNING, logger="proposers.llm.proposer"):
            first = p.propose(VIEW, 1)
            sent = len(lb.attempts)
            assert p.propose(VIEW, 4) == [] and p.propose(VIEW, 4) == []
    assert len(first) == 1 and sent == 1 and len(lb.attempts) == sent
    assert Ledger(tmp_path).totals().requests == 1
    stops = [r.message for r in caplog.records if "llm proposer stops" in r.message]
    assert len(stops) == 1 and ("token budget" if limit == "tokens" else "cost budget") in stops[0]


def test_budget_is_shared_by_the_campaigns_proposers(tmp_path: Path) -> None:
    with Loopback(_code) as lb:
        a = proposer(lb, tmp_path, concurrency=1, roles=("coder",), budget_tokens=1)
        b = proposer(lb, tmp_path, concurrency=1, roles=("coder",), budget_tokens=1)   # another hardware class
        assert len(a.propose(VIEW, 1)) == 1
        assert b.propose(StaticView(LEAKY_RELU, hardware="cpu"), 1) == []
    assert len(lb.attempts) == 1


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_restored_state_replays_cached_answers_and_sends_nothing(tmp_path: Path, provider: str) -> None:
    with Loopback(_code) as lb:
        a = proposer(lb, tmp_path, provider, concurrency=2)
        saved = a.get_state()                         # the checkpoint before the driver was killed
        first = a.propose(VIEW, 2)
        mid = a.get_state()                           # a job still in flight is named in the state
        a._pool.shutdown(wait=True)                   # let it finish (and be cached) as the killed driver's did
        sent = len(lb.attempts)
        b = proposer(lb, tmp_path, provider, concurrency=2)
        b.set_state(saved)
        again = b.propose(VIEW, 2)
        c = proposer(lb, tmp_path, provider, concurrency=2)
        c.set_state(mid)
        rest = c.propose(VIEW, 1)
        assert len(lb.attempts) == sent == 3          # not one request more than the ideator and two coders
    assert len(first) == 1 and sum(len(v) for v in mid["in_flight"].values()) == 1
    assert len(rest) == 1 and c.replayed == 1 and rest[0].id != first[0].id
    assert again and {x.id for x in again} <= {first[0].id, rest[0].id} and b.replayed >= 2


def _compile_error(reason: str = "ImportError: cannot import name 'fast_leaky' from 'torch'") -> EvalResult:
    return EvalResult(status=Status.COMPILE_ERROR, reason=reason)


def test_a_rejected_candidate_goes_to_the_fixer_for_bounded_rounds(tmp_path: Path) -> None:
    replies = iter([fenced(BROKEN), fenced(BROKEN.replace("fast_leaky", "faster_leaky")), fenced(FIXED)])
    with Loopback(lambda role, prompt, body: next(replies)) as lb:
        p = proposer(lb, tmp_path, concurrency=1, roles=("coder", "fixer"), fix_rounds=2)
        [broken] = p.propose(VIEW, 1)
        p.observe([(broken, _compile_error())])
        [fix1] = p.propose(VIEW, 1)
        fixer_prompt = lb.answered[-1]["prompt"]
        p.observe([(fix1, _compile_error("ImportError: cannot import name 'faster_leaky'"))])
        [fix2] = p.propose(VIEW, 1)
        p.observe([(fix2, _compile_error("still broken"))])         # round 2 was the last
        assert p.propose(VIEW, 1) == [] or lb.answered[-1]["role"] != "fixer"
    assert lb.answered[1]["role"] == "fixer" and "Task: fix (round 1 of 2)" in fixer_prompt
    assert "status `compile_error`" in fixer_prompt and "cannot import name 'fast_leaky'" in fixer_prompt
    assert "from torch import fast_leaky" in fixer_prompt                   # the failing source
    assert fix1.parent_ids == (broken.id,) and fix2.parent_ids == (fix1.id,)
    assert fix1.params["llm"]["role"] == "fixer" and fix2.params["llm"]["fix_round"] == 2
    assert sum(1 for a in lb.answered if a["role"] == "fixer") == 2


def test_static_findings_and_verifier_reasons_reach_the_fixer_but_not_a_suspect(tmp_path: Path) -> None:
    with Loopback(lambda role, prompt, body: fenced(FIXED if role == "fixer" else BROKEN)) as lb:
        p = proposer(lb, tmp_path, concurrency=1, roles=("coder", "fixer"))
        [c] = p.propose(VIEW, 1)
        p.observe([(c, EvalResult(status=Status.STATIC_VIOLATION, reason="line 3: reads the environment",
                                  static_flags=("line 3: reads the environment (os.environ)",)))])
        p.propose(VIEW, 1)
        prompt = lb.answered[-1]["prompt"]
        n = len(lb.answered)
        p2 = proposer(lb, tmp_path / "b", concurrency=1, roles=("coder", "fixer"))
        [d] = p2.propose(VIEW, 1)
        p2.observe([(d, EvalResult(status=Status.SUSPECT_SPEEDUP, reason="below the roofline floor"))])
        p2.propose(VIEW, 1)
    assert "Static findings:" in prompt and "reads the environment (os.environ)" in prompt
    assert [a["role"] for a in lb.answered[n:]] == ["coder", "coder"]     # a suspect goes to a person, not the fixer


def test_a_reply_without_a_module_goes_to_the_fixer_at_once(tmp_path: Path) -> None:
    replies = iter(["I would fuse the ops.", fenced(FIXED)])
    with Loopback(lambda role, prompt, body: next(replies)) as lb:
        [c] = proposer(lb, tmp_path, concurrency=1, roles=("coder", "fixer")).propose(VIEW, 1)
    assert [a["role"] for a in lb.answered] == ["coder", "fixer"]
    assert "no ```python block" in lb.answered[1]["prompt"] and c.params["llm"]["fix_round"] == 1
    assert c.params["llm"]["output_tokens"] == sum(a["output_tokens"] for a in lb.answered)


@pytest.mark.parametrize("provider, env, says", [
    ("anthropic", {}, "ANTHROPIC_API_KEY is not set"),
    ("openai", {}, "base_url"),
])
def test_without_a_key_or_endpoint_the_proposer_is_off(tmp_path: Path, provider, env, says, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="proposers.llm.proposer"):
        p = LLMProposer(provider=provider, campaign_dir=str(tmp_path), env=env)
        assert p.propose(VIEW, 4) == [] and p.propose(VIEW, 4) == []
    lines = [r.message for r in caplog.records]
    assert len(lines) == 1 and says in lines[0] and "goes on" in lines[0]
