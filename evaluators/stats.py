"""Statistics over raw timing samples: the median, its confidence interval, speedups and adaptive sampling.

The 95% interval of the median uses order statistics and the binomial distribution, so it assumes nothing about the
shape of the timing distribution (which is skewed and often multimodal); it only assumes independent samples.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Callable, Sequence

import numpy as np

from evaluators.policy import TimingPolicy
from evaluators.result import TimeStats

logger = logging.getLogger(__name__)

CONFIDENCE = 0.95
# Below this many samples no pair of order statistics reaches 95% coverage; the interval is then [min, max].
MIN_SAMPLES_FOR_CI = 6


def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int]:
    """0-based ranks (lo, hi) of the sorted samples that bound the median with at least ``confidence`` coverage.

    With B ~ Binomial(n, 1/2), the interval [x_(l), x_(n+1-l)] (1-based) covers the median with probability
    1 - 2 P(B <= l - 1); l is the largest rank that keeps that at or above ``confidence``.
    """
    if n < 1:
        raise ValueError("need at least one sample")
    if n < MIN_SAMPLES_FOR_CI:
        return 0, n - 1
    alpha_half = (1.0 - confidence) / 2.0
    k = np.arange(n // 2 + 1, dtype=np.float64)
    # log P(B = k) by the recurrence P(k + 1) = P(k) (n - k) / (k + 1), in log space so that large n cannot underflow
    log_pmf = np.empty_like(k)
    log_pmf[0] = -n * math.log(2.0)
    log_pmf[1:] = log_pmf[0] + np.cumsum(np.log(n - k[:-1]) - np.log(k[1:]))
    cdf = np.cumsum(np.exp(log_pmf))
    # the smallest ranks whose lower-tail mass stays within alpha/2; l - 1 of them is the count minus one
    l_rank = max(int(np.count_nonzero(cdf <= alpha_half)), 1)
    return l_rank - 1, n - l_rank


def summarize(samples_ns: Sequence[int | float]) -> TimeStats:
    """Median of raw nanosecond samples with its distribution-free 95% CI, all in milliseconds."""
    ms = np.sort(np.asarray(samples_ns, dtype=np.float64)) / 1e6
    if ms.size == 0:
        raise ValueError("cannot summarize zero samples")
    if not np.all(np.isfinite(ms)):
        raise ValueError("timing samples must be finite")
    lo, hi = median_ci_ranks(int(ms.size))
    return TimeStats(
        median_ms=float(np.median(ms)),
        ci_low_ms=float(ms[lo]),
        ci_high_ms=float(ms[hi]),
        count=int(ms.size),
        min_ms=float(ms[0]),
        max_ms=float(ms[-1]),
    )


def ci_is_tight(stats: TimeStats, target: float) -> bool:
    """True when the CI's half-width relative to the median is at most ``target`` (0.02 means ±2%)."""
    return stats.rel_half_width <= target


def speedup(candidate: TimeStats, baseline: TimeStats) -> tuple[float, tuple[float, float]]:
    """Baseline time over candidate time, with a conservative interval from the two CIs' opposite ends."""
    if candidate.median_ms <= 0 or candidate.ci_low_ms <= 0:
        raise ValueError(f"cannot divide by a candidate time that is not positive: {candidate}")
    point = baseline.median_ms / candidate.median_ms
    return point, (baseline.ci_low_ms / candidate.ci_high_ms, baseline.ci_high_ms / candidate.ci_low_ms)


def paired_speedup(ratios: Sequence[float]) -> tuple[float, tuple[float, float]]:
    """The speedup from paired blocks: the median of the per-block ratios (baseline time over candidate time, both
    measured in the same block), with the distribution-free 95% interval of that median. Drift between blocks
    moves the ratios, so it widens the interval instead of biasing the point."""
    r = np.sort(np.asarray(ratios, dtype=np.float64))
    if r.size == 0 or not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(f"block ratios must be positive and finite: {list(ratios)}")
    lo, hi = median_ci_ranks(int(r.size))
    return float(np.median(r)), (float(r[lo]), float(r[hi]))


def sample_until(
    run_once: Callable[[], float],
    policy: TimingPolicy,
    clock: Callable[[], float] = time.monotonic,
) -> list[float]:
    """Call ``run_once`` (one sample: a raw time in ns, or a paired block's ratio) until the median's CI meets
    ``policy.ci_target``. The one stopping rule for every sampled quantity.

    Takes ``policy.min_samples`` samples whatever the time, then batches of about a quarter of the samples so far,
    stopping when the CI is tight, ``policy.max_samples`` are taken or ``policy.time_cap_s`` has passed on ``clock``
    (checked before every call after the minimum). Warm-up is the caller's job.
    """
    max_samples = max(1, policy.max_samples)
    min_samples = min(max(1, policy.min_samples), max_samples)
    start = clock()
    samples = [run_once() for _ in range(min_samples)]
    while True:
        stats = summarize(samples)
        if ci_is_tight(stats, policy.ci_target):
            reason = "CI target met"
            break
        if len(samples) >= max_samples:
            reason = "max_samples reached"
            break
        if clock() - start >= policy.time_cap_s:
            reason = "time cap reached"
            break
        batch = min(max(1, len(samples) // 4), max_samples - len(samples))
        for _ in range(batch):
            if clock() - start >= policy.time_cap_s:
                break
            samples.append(run_once())
    logger.debug("sampling stopped after %d samples: %s (±%.2f%%)", len(samples), reason,
                 100.0 * stats.rel_half_width)
    return samples
