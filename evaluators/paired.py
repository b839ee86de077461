"""Paired timing: the candidate and the faster baseline(s) timed in alternating blocks, each in its own process.

Block k times ``calls`` calls of each subject, interleaved call by call (candidate, baselines, then the reverse
order, and so on), so that drift within a block, even a burst of other work on the host, hits every side alike. The
block's ratio is the faster baseline's median over the candidate's median in that block; the speedup is the median of the ratios with its order-statistic 95%
interval (``stats.paired_speedup``), so drift between blocks widens the interval instead of hiding in it. The
number of blocks follows the one sampling rule (``stats.sample_until``): at least ``min_blocks``, then until the
ratios' interval meets the CI target, ``max_blocks`` or twice the time cap.
"""
from __future__ import annotations

import collections
import dataclasses
import statistics

from evaluators.judge import Rejected, TimedRun, TimedSubject
from evaluators.policy import TimingPolicy
from evaluators.result import Status
from evaluators.sandbox import ChildFailed
from evaluators.stats import paired_speedup, sample_until

CALIBRATION_CALLS = 3
BLOCKS_PER_CAP = 24        # a block's share of one subject's time cap
MAX_CALLS_PER_BLOCK = 1000


@dataclasses.dataclass(frozen=True)
class PairedRun:
    """What paired timing measured."""

    ratios: tuple[float, ...]              # per block: faster baseline median / candidate median
    speedup: float
    speedup_ci: tuple[float, float]
    candidate: TimedRun
    baselines: dict[str, list[int]]        # every timed call of each baseline, ns
    calls_per_block: int
    faster: str                            # the baseline that was faster in most blocks
    reused: dict[str, bool] = dataclasses.field(default_factory=dict)   # baseline child kept from an earlier one
    check_s: float = 0.0                   # wall seconds of the candidate's timed calls' checks
    process_speedups: tuple[float, ...] = ()   # with several pairs of processes, each pair's median ratio

    def describe(self) -> dict[str, object]:
        return {"method": "paired blocks", "blocks": len(self.ratios), "calls_per_block": self.calls_per_block,
                "block_ratios": [round(r, 4) for r in self.ratios], "faster_baseline": self.faster,
                "subjects": ["candidate", *self.baselines], "baseline_child_reused": dict(self.reused),
                "processes": max(1, len(self.process_speedups)),
                "process_speedups": [round(r, 4) for r in self.process_speedups]}


def per_process(timing: TimingPolicy) -> TimingPolicy:
    """One pair of processes' share of a timing spread over ``timing.processes`` pairs: its share of the time cap
    and of the blocks (at least 2 each)."""
    n = max(1, timing.processes)
    if n == 1:
        return timing
    return dataclasses.replace(timing, time_cap_s=timing.time_cap_s / n, min_blocks=max(2, -(-timing.min_blocks // n)),
                               max_blocks=max(2, -(-timing.max_blocks // n)))


def pooled(runs: list[PairedRun]) -> PairedRun:
    """Paired runs from several pairs of fresh processes as one: the speedup is the median of all their blocks'
    ratios; its interval is the blocks' order-statistic interval widened to hold every pair's own median, so that
    what differs from one process to the next (where memory landed, which core, the allocator's state) widens the
    interval instead of moving the point from one run to the next unseen."""
    if len(runs) == 1:
        return runs[0]
    ratios = [r for run in runs for r in run.ratios]
    point, (lo, hi) = paired_speedup(ratios)
    medians = tuple(statistics.median(run.ratios) for run in runs)
    names = list(runs[0].baselines)
    baselines = {n: [ns for run in runs for ns in run.baselines.get(n, [])] for n in names}
    wins = collections.Counter(run.faster for run in runs)
    candidate = TimedRun([ns for run in runs for ns in run.candidate.samples_ns],
                         [ns for run in runs for ns in run.candidate.host_ns], sum(run.candidate.checks for run in runs))
    return PairedRun(ratios=tuple(ratios), speedup=point, speedup_ci=(min(lo, *medians), max(hi, *medians)),
                     candidate=candidate, baselines=baselines, calls_per_block=runs[0].calls_per_block,
                     faster=wins.most_common(1)[0][0], reused=runs[0].reused,
                     check_s=sum(run.check_s for run in runs), process_speedups=medians)


def calls_per_block(timing: TimingPolicy, call_ms: float) -> int:
    """Calls per subject in one block: a block takes about 1/24 of the time cap, at least 3 calls."""
    block_ms = timing.time_cap_s * 1e3 / BLOCKS_PER_CAP
    return max(3, min(MAX_CALLS_PER_BLOCK, int(block_ms / max(call_ms, 1e-6))))


def paired_blocks(candidate: TimedSubject, baselines: dict[str, TimedSubject], timing: TimingPolicy,
                  baseline_ms: float) -> PairedRun:
    """Time ``candidate`` against ``baselines`` in alternating blocks. ``baseline_ms`` is the faster baseline's
    known time per call, used only when there are no baselines to calibrate. The candidate's time comes from a few
    calibration calls (timed and checked like any other, but left out of the figures); each baseline makes as many
    calls first, left out too: the last of its warm-up."""
    for _ in range(CALIBRATION_CALLS):
        candidate.call()
    cand_ms = statistics.median(candidate.samples[-CALIBRATION_CALLS:]) / 1e6
    del candidate.samples[:], candidate.host[:]
    calibrated: list[float] = []
    for name, subject in baselines.items():    # the baselines' last warm-up, on the device alone, left out too
        for _ in range(CALIBRATION_CALLS):
            try:
                subject.call()
            except (Rejected, ChildFailed) as e:
                raise Rejected(Status.BASELINE_ERROR, f"the {name} baseline failed: {e.reason}") from None
        calibrated.append(statistics.median(subject.samples[-CALIBRATION_CALLS:]) / 1e6)
        del subject.samples[:], subject.host[:]
    # the faster baseline's time as just measured; the given one (a stored record, or for a problem new to the
    # node the reference's first call here, start-up included) only where there was nothing to calibrate
    base_ms = min(calibrated) if calibrated else baseline_ms
    calls = calls_per_block(timing, max(cand_ms, base_ms))
    subjects = [("candidate", candidate), *baselines.items()]
    wins = {name: 0 for name in baselines}
    block = 0

    def one_block() -> float:
        nonlocal block
        start = {name: len(subject.samples) for name, subject in subjects}
        for j in range(calls):
            for name, subject in (subjects if (block + j) % 2 == 0 else subjects[::-1]):
                if subject is candidate:
                    subject.call()
                    continue
                try:
                    subject.call()
                except (Rejected, ChildFailed) as e:   # the reference's own fault, never the candidate's
                    raise Rejected(Status.BASELINE_ERROR, f"the {name} baseline failed while paired: "
                                   f"{e.reason}") from None
        medians = {name: statistics.median(subject.samples[start[name]:]) for name, subject in subjects}
        block += 1
        faster = min(baselines, key=lambda n: medians[n])
        wins[faster] += 1
        return medians[faster] / medians["candidate"]

    blocks = dataclasses.replace(timing, min_samples=timing.min_blocks, max_samples=max(timing.min_blocks,
                                 timing.max_blocks), time_cap_s=2 * timing.time_cap_s)
    ratios = sample_until(one_block, blocks)
    run = candidate.finish()
    point, ci = paired_speedup(ratios)
    return PairedRun(ratios=tuple(ratios), speedup=point, speedup_ci=ci, candidate=run,
                     baselines={n: list(s.samples) for n, s in baselines.items()}, calls_per_block=calls,
                     faster=max(wins, key=wins.get), check_s=candidate.check_s)
