"""A checked timed call whose outputs hold more than 64 MiB is compared on elements drawn after the call (of the
trials and probes, ``whole_checks`` compare every element): an honest candidate is accepted, a candidate that is
right while it is verified and wrong once it is timed is still ``timed_mismatch``, and an output of the wrong shape
is a bad output.
Real sandboxed children on the CPU, with the threshold lowered to 256 KiB (it is the evaluator's, in this process)
so that a 2 MiB output is sampled."""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from evaluators import judge
from evaluators.judge import Rejected
from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy
from evaluators.result import Status
from evaluators.warm import POOL

PROBLEM = """\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return x * 2.0 + 1.0


def get_inputs():
    return [torch.randn(512, 1024)]


def get_init_inputs():
    return []
"""
HONEST = PROBLEM.replace("class Model(", "class ModelNew(").replace(
    "x * 2.0 + 1.0", "torch.addcmul(torch.ones_like(x), x, torch.full_like(x, 2.0))")
# right for the build's call and every verification call, then right everywhere but one row once timed
CHEAT = PROBLEM.replace("class Model(", "class ModelNew(").replace("""    def forward(self, x):
        return x * 2.0 + 1.0""", """    calls = 0

    def forward(self, x):
        type(self).calls += 1
        out = x * 2.0 + 1.0
        if type(self).calls > 12:
            out[: out.shape[0] // 2] = 0.0
        return out""")


@pytest.fixture(autouse=True)
def no_spares_left():
    yield
    POOL.retain(False)
    POOL.close()


@pytest.fixture
def sampled(monkeypatch):
    """The threshold lowered, and the samples drawn counted."""
    drawn = []
    real = judge.sample_indices

    def counting(outs, rng, n):
        got = real(outs, rng, n)
        drawn.append([None if i is None else i.numel() for i in got])
        return got

    monkeypatch.setattr(judge, "SAMPLED_CHECK_MIN_BYTES", 256 << 10)
    monkeypatch.setattr(judge, "sample_indices", counting)
    return drawn


def _bench(tmp_path, cache_dir, source: str) -> EvalRequest:
    problem = tmp_path / "affine.py"
    problem.write_text(PROBLEM)
    return EvalRequest(problem_path=str(problem), candidate_source=source, device="cpu", mode="bench",
                       verify=VerifyPolicy(seed=7, timed_checks=6, probes=(), trials=3, timed_check_elements=4096),
                       cache_dir=str(cache_dir),
                       timing=TimingPolicy(baselines=("eager",), time_cap_s=0.5, min_samples=8))


def test_an_honest_candidate_with_large_outputs_is_accepted_on_sampled_timed_checks(tmp_path, kswarm_cache_dir,
                                                                                    sampled):
    result = evaluate(_bench(tmp_path, kswarm_cache_dir, HONEST))
    assert result.status is Status.ACCEPTED, result.reason
    assert result.checked_calls > 3                     # the trials, and timed calls checked besides
    assert sampled and all(d == [4096] for d in sampled)   # each checked timed call compared 4096 elements


def test_wrong_once_timed_is_caught_on_a_sample(tmp_path, kswarm_cache_dir, sampled):
    result = evaluate(_bench(tmp_path, kswarm_cache_dir, CHEAT))
    assert sampled
    assert result.status is Status.TIMED_MISMATCH, result.reason
    assert "checked at random" in result.reason


def test_sampled_outputs_of_the_wrong_shape_are_a_bad_output():
    class Ref:
        device = "cpu"
        info = type("Info", (), {"tolerance": None})()

    out = [torch.arange(10.0)]
    sample = judge.sample_indices(out, random.Random(1), 4)
    reply = {"outputs": [torch.zeros(4)], "shapes": [[11]], "devices": ["cpu"], "inputs_after": []}
    with pytest.raises(Rejected) as e:
        judge.judge_outputs("outputs", reply, [], out, Ref(), VerifyPolicy(), judge.CheckLog(), "timed call 9",
                            Status.TIMED_MISMATCH, sample=sample)
    assert e.value.status is Status.BAD_OUTPUT and "shapes [[11]]" in e.value.reason
    good = {**reply, "shapes": [[10]], "outputs": [out[0][sample[0]]]}
    judge.judge_outputs("outputs", good, [], out, Ref(), VerifyPolicy(), judge.CheckLog(), "timed call 9",
                        Status.TIMED_MISMATCH, sample=sample)


# wrong on one element of every call: only a comparison of every element sees it
ONE_ELEMENT = PROBLEM.replace("class Model(", "class ModelNew(").replace(
    "return x * 2.0 + 1.0", "out = x * 2.0 + 1.0\n        out[7, 7] += 1.0\n        return out")
# right for its warm-up (3 calls) and the first trial, then wrong on one row (1/512 of the elements)
ROW_AFTER_FIRST = PROBLEM.replace("class Model(", "class ModelNew(").replace("""    def forward(self, x):
        return x * 2.0 + 1.0""", """    calls = 0

    def forward(self, x):
        type(self).calls += 1
        out = x * 2.0 + 1.0
        if type(self).calls > 4:
            out[3] = 0.0
        return out""")


def _verify_large(tmp_path, cache_dir, source: str, whole_checks: int) -> EvalRequest:
    req = _bench(tmp_path, cache_dir, source)
    return dataclasses.replace(req, verify=dataclasses.replace(req.verify, whole_checks=whole_checks))


def test_the_first_trial_of_large_outputs_is_compared_on_every_element(tmp_path, kswarm_cache_dir, sampled):
    result = evaluate(_verify_large(tmp_path, kswarm_cache_dir, ONE_ELEMENT, whole_checks=1))
    assert result.status is Status.MISMATCH, result.reason
    assert result.reason.startswith("trial 1:"), result.reason


def test_a_sampled_trial_catches_a_wrong_row(tmp_path, kswarm_cache_dir, sampled):
    result = evaluate(_verify_large(tmp_path, kswarm_cache_dir, ROW_AFTER_FIRST, whole_checks=1))
    assert result.status is Status.MISMATCH, result.reason
    assert result.reason.startswith("trial 2:"), result.reason
    assert sampled == [[4096]]                           # trial 2 was compared on its sample, and failed there
