"""Paired timing spread over several pairs of fresh processes (``TimingPolicy.processes``).

The blocks of one candidate process and one baseline process cannot see what changes from one process to the
next, so five benches of the same candidate gave points a few percent apart with intervals narrower than that.
Spread over pairs of fresh processes, the point is the median of every block's ratio and the interval holds each
pair's own median as well as the blocks' order-statistic interval.
"""
from __future__ import annotations

import pytest

from evaluators.judge import TimedRun
from evaluators.paired import PairedRun, per_process, pooled
from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy
from evaluators.result import Status
from evaluators.stats import paired_speedup
from evaluators.warm import POOL

PROBLEM = """\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return torch.tanh(x) * 2.0


def get_inputs():
    return [torch.randn(256, 256)]


def get_init_inputs():
    return []
"""
CANDIDATE = PROBLEM.replace("class Model(", "class ModelNew(").replace("torch.tanh(x) * 2.0", "torch.tanh(x).mul_(2.0)")


def _run(ratios: list[float], faster: str = "eager") -> PairedRun:
    point, ci = paired_speedup(ratios)
    return PairedRun(ratios=tuple(ratios), speedup=point, speedup_ci=ci,
                     candidate=TimedRun([1000] * len(ratios), [1100] * len(ratios), 1),
                     baselines={"eager": [2000] * len(ratios)}, calls_per_block=3, faster=faster, check_s=0.5)


def test_the_pooled_interval_holds_every_pairs_own_median():
    # two processes whose blocks agree among themselves and differ from each other by 10%
    a = _run([1.00, 1.01, 0.99, 1.00, 1.01, 0.99])
    b = _run([1.10, 1.11, 1.09, 1.10, 1.11, 1.09])
    c = _run([1.05, 1.04, 1.06, 1.05, 1.04, 1.06])
    one = pooled([a, b, c])
    assert one.process_speedups == pytest.approx((1.00, 1.10, 1.05))
    lo, hi = one.speedup_ci
    assert lo <= 1.00 and hi >= 1.10, one.speedup_ci
    assert one.speedup == pytest.approx(1.05)           # the median of all 18 blocks
    assert len(one.ratios) == 18 and one.candidate.checks == 3 and one.check_s == pytest.approx(1.5)
    assert one.baselines["eager"] == [2000] * 18
    assert one.describe()["processes"] == 3
    # alone, the middle process's interval would have held neither of the others' medians
    assert not (c.speedup_ci[0] <= 1.00 or c.speedup_ci[1] >= 1.10)
    assert pooled([a]) is a


def test_each_pair_gets_its_share_of_the_time_cap_and_blocks():
    t = TimingPolicy(time_cap_s=9.0, min_blocks=6, max_blocks=200, processes=3)
    share = per_process(t)
    assert share.time_cap_s == pytest.approx(3.0) and share.min_blocks == 2 and share.max_blocks == 67
    assert per_process(TimingPolicy()) == TimingPolicy()


@pytest.fixture(autouse=True)
def _fresh_pool():
    POOL.close()
    yield
    POOL.close()


def _bench(problem, cache_dir, processes: int):
    return evaluate(EvalRequest(problem_path=str(problem), candidate_source=CANDIDATE, device="cpu", mode="bench",
                                verify=VerifyPolicy(seed=5), cache_dir=str(cache_dir),
                                timing=TimingPolicy(baselines=("eager",), time_cap_s=0.6, min_blocks=6,
                                                    max_blocks=12, processes=processes)))


def _recording_takes(monkeypatch) -> list[tuple[str, int]]:
    """Every child the pool hands out, as (role, pid): spares started in the background make a count of started
    children depend on timing, the processes actually taken do not."""
    taken: list[tuple[str, int]] = []
    take = POOL.take

    def recorded(limits, cache_dir, role):
        child = take(limits, cache_dir, role)
        taken.append((role, child.proc.pid))
        return child

    monkeypatch.setattr(POOL, "take", recorded)
    return taken


def test_a_bench_over_two_pairs_of_processes_starts_a_new_pair_and_reports_both(tmp_path, monkeypatch):
    problem = tmp_path / "tanh_double.py"
    problem.write_text(PROBLEM)
    taken = _recording_takes(monkeypatch)
    from evaluators import timing_phase
    trials: list[tuple[int, int, int]] = []         # (candidate pid, trials, probes) of each fresh pair's check
    check = timing_phase.verify_calls

    def recorded_check(child, ref, policy, *args, **kwargs):
        trials.append((child.proc.pid, policy.trials, len(policy.probes)))
        return check(child, ref, policy, *args, **kwargs)

    monkeypatch.setattr(timing_phase, "verify_calls", recorded_check)
    one = _bench(problem, tmp_path / "cache", 1)
    assert one.status == Status.ACCEPTED, one.reason
    first = list(taken)
    taken.clear()
    two = _bench(problem, tmp_path / "cache", 2)
    assert two.status == Status.ACCEPTED, two.reason
    # the second pair is new processes, not the first pair again: two candidate children, each its own process
    candidates = [pid for role, pid in taken if role == "candidate"]
    assert len(candidates) == len(set(candidates)) == 2, taken
    assert len([pid for role, pid in first if role == "candidate"]) == 1, first
    # and the second pair's baseline runs in a child taken for it, never one the first pair timed in
    baselines = [pid for role, pid in taken if role == "baseline"]
    assert len(baselines) == len(set(baselines)) >= 1, taken
    assert not set(candidates) & set(baselines)
    timing = two.timing
    assert timing["processes"] == 2 and len(timing["process_speedups"]) == 2
    lo, hi = two.speedup_ci
    assert all(lo <= s <= hi for s in timing["process_speedups"])
    assert timing["blocks"] >= 2 * 3                       # each pair at least its share of min_blocks
    # the new pair's candidate was checked too: one fresh trial before its timed calls (the first pair's candidate
    # was verified by the pipeline), and each pair's last timed call at least, so more checks than verification's
    assert trials == [(candidates[1], 1, 0)], (trials, candidates)
    verification = VerifyPolicy(seed=5).trials + len(VerifyPolicy(seed=5).probes)
    assert one.checked_calls >= verification + 1
    assert two.checked_calls >= verification + 1 + 2
    assert one.timing["processes"] == 1 and one.timing["process_speedups"] == []


def test_the_first_pair_outlasts_a_fresh_pair_that_builds_for_longer_than_its_timing_limit(tmp_path, monkeypatch):
    # a cold torch.compile on a busy host can build a fresh pair for longer than the wall clock armed for timing;
    # the first pair's children, idle meanwhile and used again afterwards, must not run past a deadline
    from evaluators import limits, timing_phase
    monkeypatch.setattr(limits, "timing_timeout", lambda req, call_s, subjects: (4.0, "4 s to time, for this test"))
    build = timing_phase.init_child
    slow: list[str] = []

    def slow_candidate_build(child, name, *args, **kwargs):
        if name == "candidate":          # the fresh pair's candidate (the first one is built by the pipeline)
            slow.append(name)
            import time
            time.sleep(6.0)
        return build(child, name, *args, **kwargs)

    monkeypatch.setattr(timing_phase, "init_child", slow_candidate_build)
    problem = tmp_path / "tanh_double.py"
    problem.write_text(PROBLEM)
    two = _bench(problem, tmp_path / "cache", 2)
    assert slow == ["candidate"]
    assert two.status == Status.ACCEPTED, two.reason
    assert two.timing["processes"] == 2
