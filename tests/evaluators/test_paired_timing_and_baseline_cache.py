"""Paired timing and the node's baseline records.

- The speedup is the median of paired blocks' ratios, with the order-statistic interval of that median: a drift
  that hits both sides alike leaves it where it is.
- A real bench times the candidate in blocks against the faster baseline, each in its own child, and reports its
  blocks; the baselines are measured once per node and key, with provenance, and read back by the next bench.
- Two evaluations that need the same record at once measure it once (a lock on the key), and a reader never sees
  a half-written record.
"""
from __future__ import annotations

import json
import random
import threading

import pytest

from evaluators.baseline import baseline_dir, baselines
from evaluators.judge import build_reference
from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy
from evaluators.result import Status
from evaluators.sandbox import SandboxLimits
from evaluators.stats import median_ci_ranks, paired_speedup

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
TIMING = TimingPolicy(baselines=("eager",), time_cap_s=0.6, min_blocks=6, max_blocks=12)


def test_drift_that_hits_both_sides_leaves_the_speedup_alone():
    # the machine slows down 3x over the run; each block's baseline is twice its candidate
    drift = [1.0 + 2.0 * k / 11 for k in range(12)]
    ratios = [(2.0 * d) / (1.0 * d) for d in drift]
    point, (lo, hi) = paired_speedup(ratios)
    assert point == pytest.approx(2.0) and lo == pytest.approx(2.0) and hi == pytest.approx(2.0)


def test_the_interval_is_the_order_statistics_of_the_block_ratios():
    rng = random.Random(4)
    ratios = [1.5 * (1 + rng.uniform(-0.1, 0.1)) for _ in range(25)]
    point, (lo, hi) = paired_speedup(ratios)
    r = sorted(ratios)
    i, j = median_ci_ranks(len(r))
    assert (lo, hi) == (r[i], r[j]) and lo < point < hi
    with pytest.raises(ValueError):
        paired_speedup([1.0, 0.0])


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    path = tmp_path_factory.mktemp("paired") / "tanh_double.py"
    path.write_text(PROBLEM)
    return path


def _bench(problem, cache_dir, rounds: int = 1):
    return evaluate(EvalRequest(problem_path=str(problem), candidate_source=CANDIDATE, device="cpu", mode="bench",
                                verify=VerifyPolicy(seed=11), cache_dir=str(cache_dir),
                                timing=TimingPolicy(**{**TIMING.to_dict(), "baselines": ("eager",),
                                                       "rounds": rounds})))


def test_a_bench_is_paired_and_its_baseline_record_is_measured_once(problem, tmp_path):
    first = _bench(problem, tmp_path)
    assert first.status is Status.ACCEPTED, first.reason
    t = first.timing
    assert t["method"] == "paired blocks" and t["subjects"] == ["candidate", "eager"]
    assert TIMING.min_blocks <= t["blocks"] <= TIMING.max_blocks and t["calls_per_block"] >= 3
    point, ci = paired_speedup(t["block_ratios"])
    assert first.speedup == pytest.approx(point, rel=1e-3)
    assert first.speedup_ci[0] <= first.speedup <= first.speedup_ci[1]
    assert first.candidate.count == t["blocks"] * t["calls_per_block"]
    record = t["baseline_record"]
    assert record["cached"] is False
    assert {"measured_at", "host", "versions", "spread", "hardware"} <= set(record)
    stored = json.loads((baseline_dir(tmp_path) / f"{record['key']}.json").read_text())
    assert stored["measured_at"] == record["measured_at"] and stored["baselines"]["eager"]["peak_rss_mb"] > 0
    # a first evaluation's record is made of the baseline calls timed while paired: no separate measurement
    assert len(stored["baselines"]["eager"]["samples_ns"]) == t["blocks"] * t["calls_per_block"]
    assert stored["baselines"]["eager"]["compile_seconds"] is not None

    second = _bench(problem, tmp_path)
    assert second.status is Status.ACCEPTED, second.reason
    again = second.timing["baseline_record"]
    assert again["cached"] is True and again["measured_at"] == record["measured_at"]
    # the candidate's memory limit now follows the reference's measured footprint
    assert "measured footprint" in second.policy["memory_limit_why"]

    fresh = _bench(problem, tmp_path, rounds=2)
    assert fresh.timing["baseline_record"]["cached"] is False
    assert fresh.timing["baseline_record"]["measured_at"] > record["measured_at"]


def test_concurrent_evaluations_measure_a_record_once(problem, tmp_path):
    ref = build_reference(str(problem), "default", "cpu", 3)
    limits = SandboxLimits(timeout_s=120, memory_mb=4096)
    got: list = []

    def measure(seed: int) -> None:
        got.append(baselines(ref, device_name="cpu", timing=TIMING, limits=limits, cache_dir=tmp_path,
                             directory=tmp_path / "baselines", rng=random.Random(seed)))

    threads = [threading.Thread(target=measure, args=(s,)) for s in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(got) == 2
    assert len({r.measured_at for r in got}) == 1, "the record was measured more than once"
    assert sorted(r.cached for r in got) == [False, True]
    assert not [p for p in (tmp_path / "baselines").iterdir() if p.name.startswith(".tmp-")]


SLOW_FIRST_CALL = PROBLEM.replace("""    def forward(self, x):
        return torch.tanh(x) * 2.0""", """    calls = 0

    def forward(self, x):
        Model.calls += 1
        if Model.calls == 1:        # a first call slowed by a one-off start-up (a library's initialisation)
            import time
            time.sleep(0.5)
        return torch.tanh(x) * 2.0""")


def test_a_first_pairing_sizes_its_blocks_by_the_baselines_calibrated_time(tmp_path):
    """A problem new to the node has no record: the blocks are sized by the baselines' calibration calls, not by
    the reference's first call in the evaluator (start-up included), which would make blocks of 3 calls."""
    path = tmp_path / "slow_first.py"
    path.write_text(SLOW_FIRST_CALL)
    result = evaluate(EvalRequest(problem_path=str(path), candidate_source=CANDIDATE, device="cpu", mode="bench",
                                  verify=VerifyPolicy(seed=2), cache_dir=str(tmp_path / "cache"),
                                  timing=TimingPolicy(baselines=("eager",), time_cap_s=3.0, min_blocks=6,
                                                      max_blocks=6)))
    assert result.status is Status.ACCEPTED, result.reason
    assert result.timing["baseline_record"]["cached"] is False
    # a block is 1/24 of the 3 s cap, 125 ms: sized by the 0.5 s first call it would hold 3 calls of each
    assert result.timing["calls_per_block"] > 3, result.timing
