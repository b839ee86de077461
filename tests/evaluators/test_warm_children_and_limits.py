"""Warm children and limits that follow the problem.

- A spare started ahead serves the next candidate: started before that evaluation began, scrubbed like any child,
  one candidate per child (never reused), and nothing outlives the pool.
- The memory limit follows the reference's footprint (a multiple, with a floor) unless set, and an out_of_memory
  says what the limit was and why; the wall-clock limit follows the reference's time and the backend's compile
  allowance, below the verify.timeout_s ceiling, and a timeout says why too.
"""
from __future__ import annotations

import json
import textwrap

import psutil
import pytest

from evaluators import limits as lim
from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, VerifyPolicy
from evaluators.result import Status
from evaluators.warm import POOL

PROBLEM = """\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return x * 2.0


def get_inputs():
    return [torch.randn(64)]


def get_init_inputs():
    return []
"""
SECRET = "KSWARM_TEST_WARM_SECRET"


def candidate(init: str = "", forward: str = "return x * 2.0") -> str:
    return ("import json, os, time\nimport torch\nimport torch.nn as nn\n\n\nclass ModelNew(nn.Module):\n"
            "    def __init__(self):\n        super().__init__()\n"
            + textwrap.indent(textwrap.dedent(init) or "pass\n", " " * 8)
            + "\n    def forward(self, x):\n" + textwrap.indent(textwrap.dedent(forward), " " * 8) + "\n")


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    path = tmp_path_factory.mktemp("warm") / "double.py"
    path.write_text(PROBLEM)
    return path


def _verify(problem, source, cache_dir, **policy):
    return evaluate(EvalRequest(problem_path=str(problem), candidate_source=source, device="cpu", mode="verify",
                                verify=VerifyPolicy(seed=2, **policy), cache_dir=str(cache_dir)))


def _sandbox_children() -> list[int]:
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "evaluators.child" in " ".join(p.cmdline()):
                found.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def test_a_spare_started_ahead_serves_the_next_candidate_once(problem, kswarm_cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET, "sk-not-a-real-key")
    report = tmp_path / "seen-{n}.json"
    init = """\
    me = os.getpid()
    with open({path!r}, "w") as f:
        json.dump({{"pid": me, "secret": {secret!r} in os.environ, "home": os.environ.get("HOME")}}, f)
    """
    POOL.retain(True)
    try:
        served = POOL.served_warm
        first = _verify(problem, candidate(init.format(path=str(report).format(n=1), secret=SECRET)),
                        kswarm_cache_dir, static="warn", extra_writable=(str(tmp_path),))
        assert first.status is Status.ACCEPTED, first.reason
        second = _verify(problem, candidate(init.format(path=str(report).format(n=2), secret=SECRET)),
                         kswarm_cache_dir, static="warn", extra_writable=(str(tmp_path),))
        assert second.status is Status.ACCEPTED, second.reason
        one, two = (json.loads((tmp_path / f"seen-{n}.json").read_text()) for n in (1, 2))
        assert one["pid"] != two["pid"], "a child served two candidates"
        assert POOL.served_warm > served, "the second candidate did not get the spare started during the first"
        assert not one["secret"] and not two["secret"]
        assert "kswarm-candidate-" in two["home"]
        assert not psutil.pid_exists(two["pid"]) or psutil.Process(two["pid"]).status() == psutil.STATUS_ZOMBIE
        left = _sandbox_children()
        assert left, "no spare is kept while the pool retains"
    finally:
        POOL.retain(False)
        POOL.close()
    assert not _sandbox_children()


def test_a_built_baseline_child_times_the_next_candidate_of_its_problem(problem, kswarm_cache_dir):
    """With a timing slot (a long-lived evaluator), the baseline child built for one candidate is kept and times
    the next candidate of the same problem; it never ran candidate code, and it ends with the pool."""
    import contextlib

    from evaluators.policy import TimingPolicy

    def bench():
        return evaluate(EvalRequest(problem_path=str(problem), candidate_source=candidate(forward="return x + x"),
                                    device="cpu", mode="bench", verify=VerifyPolicy(seed=4),
                                    timing=TimingPolicy(baselines=("eager",), time_cap_s=0.3, rounds=1),
                                    cache_dir=str(kswarm_cache_dir)), timing_slot=contextlib.nullcontext())
    try:
        first, second = bench(), bench()
        assert first.status is Status.ACCEPTED and second.status is Status.ACCEPTED, (first.reason, second.reason)
        assert first.timing["baseline_child_reused"] == {"eager": False}
        assert second.timing["baseline_child_reused"] == {"eager": True}
    finally:
        POOL.retain(False)
        POOL.close()
    assert not _sandbox_children()


def test_out_of_memory_says_what_the_limit_was_and_why(problem, kswarm_cache_dir):
    forward = """\
    hoard = [torch.ones(64 << 20) for _ in range(40)]   # 10 GB, each chunk resident
    return x * 2.0
    """
    result = _verify(problem, candidate(forward=forward), kswarm_cache_dir, memory_floor_mb=256,
                     memory_multiple=1.5, timeout_s=120)
    assert result.status is Status.OUT_OF_MEMORY, result.reason
    assert "1.5x the reference's" in result.reason and "footprint" in result.reason
    limit = result.policy["memory_limit_mb"]
    assert f"over the limit of {limit} MB" in result.reason and limit < 8192


def test_a_hang_is_cut_at_the_ceiling_and_says_so(problem, kswarm_cache_dir):
    result = _verify(problem, candidate(forward="time.sleep(3600)\nreturn x"), kswarm_cache_dir, timeout_s=12)
    assert result.status is Status.TIMEOUT, result.reason
    assert "wall-clock limit of 12 s (verify.timeout_s; the problem would allow" in result.reason


def _req(source: str, **verify) -> EvalRequest:
    return EvalRequest(problem_path="p.py", candidate_source=source, verify=VerifyPolicy(**verify))


def test_the_wall_clock_limit_follows_the_backend_and_the_reference_time():
    plain, why = lim.build_timeout(_req("return x + x"), "return x + x", calls=20, call_s=0.01)
    compiled, _ = lim.build_timeout(_req("torch.compile"), "torch.compile(self.m)", calls=20, call_s=0.01)
    slow, _ = lim.build_timeout(_req("return x + x"), "return x + x", calls=20, call_s=1.0)
    assert plain < compiled and plain < slow
    assert plain == pytest.approx(lim.START_UP_S + lim.PLAIN_BUILD_S + lim.CALL_SLACK * 20 * 0.01)
    assert "10.0 ms per call over 20 calls" in why
    capped, why = lim.build_timeout(_req("x", timeout_s=30.0), "x", calls=20, call_s=1.0)
    assert capped == 30.0 and why.startswith("verify.timeout_s")


def test_the_memory_limit_follows_the_footprint_with_a_floor():
    assert lim.memory_limit(_req("x"), 4000.0, 500.0) == (16000, "4x the reference's measured footprint of 4000 MB")
    floor, why = lim.memory_limit(_req("x"), None, 500.0)
    assert floor == 8192 and why.startswith("the floor") and "estimated footprint of 500 MB" in why
    assert lim.memory_limit(_req("x", memory_mb=1500), 4000.0, 500.0) == (1500, "set by verify.memory_mb")
