"""The median's confidence interval covers the truth, narrows with more samples, and drives adaptive sampling."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from evaluators.policy import TimingPolicy
from evaluators.result import TimeStats
from evaluators.stats import ci_is_tight, median_ci_ranks, sample_until, speedup, summarize


def stats(median: float, low: float, high: float) -> TimeStats:
    return TimeStats(median_ms=median, ci_low_ms=low, ci_high_ms=high, count=100, min_ms=low, max_ms=high)


@pytest.mark.parametrize(("name", "draw", "true_median_ns"), [
    # a skewed, timing-like distribution: 1 ms plus an exponential tail of mean 0.2 ms
    ("shifted_exponential", lambda rng, n: 1e6 + rng.exponential(2e5, n), 1e6 + 2e5 * math.log(2)),
    ("lognormal", lambda rng, n: 1e6 * rng.lognormal(0.0, 0.5, n), 1e6),
    ("uniform", lambda rng, n: rng.uniform(1e6, 3e6, n), 2e6),
])
@pytest.mark.parametrize("n", [10, 50, 400])
def test_ci_covers_the_true_median_at_least_90_percent_of_the_time(name, draw, true_median_ns, n) -> None:
    rng = np.random.default_rng(20240601)
    repetitions = 200
    covered = 0
    for _ in range(repetitions):
        s = summarize(draw(rng, n))
        covered += s.ci_low_ms <= true_median_ns / 1e6 <= s.ci_high_ms
    assert covered / repetitions >= 0.90


def test_ci_ranks_match_the_binomial_tables() -> None:
    # 1-based (6, 15) for n = 20 and (40, 61) for n = 100 are the standard 95% order statistics
    assert median_ci_ranks(20) == (5, 14)
    assert median_ci_ranks(100) == (39, 60)


def test_ci_shrinks_as_samples_grow() -> None:
    rng = np.random.default_rng(7)
    widths = []
    for n in (20, 200, 2000, 20000):
        s = summarize(1e6 + rng.exponential(2e5, n))
        widths.append(s.ci_high_ms - s.ci_low_ms)
    assert widths == sorted(widths, reverse=True)
    assert widths[-1] < widths[0] / 10


@pytest.mark.parametrize("n", [1, 2, 5])
def test_few_samples_give_min_to_max(n: int) -> None:
    samples = [3_000_000, 1_000_000, 2_000_000, 5_000_000, 4_000_000][:n]
    s = summarize(samples)
    assert (s.ci_low_ms, s.ci_high_ms) == (min(samples) / 1e6, max(samples) / 1e6)
    assert s.count == n


def test_summary_is_in_milliseconds_and_reports_the_median() -> None:
    s = summarize([1_000_000, 2_000_000, 3_000_000, 4_000_000, 100_000_000, 2_500_000, 2_500_000])
    assert s.median_ms == 2.5
    assert s.min_ms == 1.0 and s.max_ms == 100.0
    assert s.ci_low_ms <= s.median_ms <= s.ci_high_ms


def test_empty_or_non_finite_samples_are_rejected() -> None:
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])


def test_tightness_is_relative_half_width() -> None:
    assert ci_is_tight(stats(1.0, 0.99, 1.01), 0.02)
    assert not ci_is_tight(stats(1.0, 0.95, 1.05), 0.02)


def test_speedup_interval_contains_the_point_and_uses_opposite_ends() -> None:
    candidate, baseline = stats(1.0, 0.9, 1.2), stats(3.0, 2.8, 3.3)
    point, (low, high) = speedup(candidate, baseline)
    assert point == pytest.approx(3.0)
    assert low == pytest.approx(2.8 / 1.2) and high == pytest.approx(3.3 / 0.9)
    assert low <= point <= high


def test_speedup_over_a_zero_time_is_an_error() -> None:
    with pytest.raises(ValueError):
        speedup(stats(0.0, 0.0, 0.0), stats(1.0, 1.0, 1.0))


class FakeClock:
    """A clock that advances only when a sample is taken, so no test depends on real time."""

    def __init__(self, seconds_per_sample: float) -> None:
        self.now = 0.0
        self.step = seconds_per_sample

    def __call__(self) -> float:
        return self.now

    def sampler(self, values):
        it = iter(values)

        def run_once() -> int:
            self.now += self.step
            return next(it)
        return run_once


def test_constant_samples_stop_at_min_samples() -> None:
    clock = FakeClock(0.0)
    policy = TimingPolicy(min_samples=10, max_samples=1000, ci_target=0.02, time_cap_s=60.0)
    samples = sample_until(clock.sampler(itertools.repeat(1_000_000)), policy, clock=clock)
    assert samples == [1_000_000] * 10


def test_wild_samples_stop_at_max_samples() -> None:
    rng = np.random.default_rng(3)
    clock = FakeClock(0.0)
    policy = TimingPolicy(min_samples=10, max_samples=300, ci_target=0.02, time_cap_s=60.0)
    wild = (int(x) for x in rng.uniform(1e5, 1e8, 10_000))
    samples = sample_until(clock.sampler(wild), policy, clock=clock)
    assert len(samples) == 300


def test_time_cap_is_honoured_after_the_minimum() -> None:
    rng = np.random.default_rng(4)
    clock = FakeClock(1.0)
    policy = TimingPolicy(min_samples=3, max_samples=1000, ci_target=0.02, time_cap_s=5.0)
    wild = (int(x) for x in rng.uniform(1e5, 1e8, 10_000))
    samples = sample_until(clock.sampler(wild), policy, clock=clock)
    # one second per call: calls start at t = 0, 1, 2, 3 and 4; at t = 5 the cap is reached
    assert len(samples) == 5


def test_minimum_is_taken_even_past_the_time_cap() -> None:
    clock = FakeClock(100.0)
    policy = TimingPolicy(min_samples=4, max_samples=1000, ci_target=0.0, time_cap_s=1.0)
    samples = sample_until(clock.sampler(itertools.count(1_000_000, 10_000)), policy, clock=clock)
    assert len(samples) == 4


def test_noisy_but_stable_samples_stop_once_the_ci_is_tight() -> None:
    rng = np.random.default_rng(5)
    clock = FakeClock(0.0)
    policy = TimingPolicy(min_samples=10, max_samples=100_000, ci_target=0.02, time_cap_s=60.0)
    noisy = (int(x) for x in 1e6 * rng.lognormal(0.0, 0.1, 100_000))
    samples = sample_until(clock.sampler(noisy), policy, clock=clock)
    assert 10 < len(samples) < 1000
    assert ci_is_tight(summarize(samples), 0.02)
    assert not ci_is_tight(summarize(samples[:10]), 0.02)
