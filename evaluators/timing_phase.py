"""An evaluation's plan (the limits of its children, following the problem) and its timing phase.

The timing phase pairs the candidate's child with the baselines' children in alternating blocks, with the device
alone; with ``timing.processes`` above 1 it then builds fresh pairs of processes and times them as well, each with
its share of the time cap. A problem's first evaluation on a node pairs the candidate with every baseline and makes
the node's record from the baselines' calls.
"""
from __future__ import annotations

import contextlib
import dataclasses
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluators import integrity, limits as lim
from evaluators.baseline import BaselineRecord, lookup, record_from_pairing
from evaluators.judge import CheckLog, Reference, Rejected, TimedSubject, audit, init_child, timer_kind, verify_calls
from evaluators.paired import PairedRun, paired_blocks, per_process, pooled
from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy
from evaluators.result import Status
from evaluators.sandbox import Child, ChildFailed, SandboxLimits
from evaluators.warm import POOL

if TYPE_CHECKING:
    from evaluators.pipeline import StageClock

VERIFY_MODE_CALLS = 30     # checked calls a verify-mode evaluation makes beyond its trials


@dataclasses.dataclass(frozen=True)
class Plan:
    """The limits of this evaluation's children, following the problem."""
    candidate: SandboxLimits
    baseline: SandboxLimits
    call_s: float
    record: BaselineRecord | None


def make_plan(req: EvalRequest, ref: Reference, device_name: str, bdir: Path) -> Plan:
    known = lookup(ref, device_name, req.timing, bdir)
    call_s = max(ref.call_s, known.stats(known.fastest).median_ms / 1e3 if known and known.baselines else 0.0, 1e-3)
    weights = sum(v.numel() * v.element_size() for v in ref.state_dict.values())
    # the child holds the weights twice (received, and in its model); on a CPU also a few sets of inputs and outputs
    held = 2 * weights + (4 * (ref.in_bytes + ref.out_bytes) if timer_kind(req.device) == "cpu" else 0)
    memory = lim.memory_limit(req, known.footprint_mb if known else None, lim.TORCH_OVERHEAD_MB + held / (1 << 20))
    probes = len(req.verify.probes)
    calls = req.timing.warmup + req.verify.trials + probes + (VERIFY_MODE_CALLS if req.mode == "verify" else 0) + 2
    cand = lim.sandbox_limits(req, memory=memory, timeout=lim.build_timeout(req, req.candidate_source, calls, call_s))
    build = lim.build_timeout(req, None, req.timing.warmup + 1, call_s)
    timing = lim.timing_timeout(req, call_s, 1)
    base = lim.sandbox_limits(req, memory=memory, timeout=(min(req.verify.timeout_s, build[0] + timing[0]),
                                                           f"{build[1]}; then {timing[1]}"))
    return Plan(cand, base, call_s, known)


def applied(plan: Plan) -> dict[str, Any]:
    c = plan.candidate
    return {"memory_limit_mb": c.memory_mb, "memory_limit_why": c.memory_why, "timeout_limit_s": round(c.timeout_s, 1),
            "timeout_limit_why": c.timeout_why}


def baseline_children(req: EvalRequest, ref: Reference, plan: Plan, known: BaselineRecord | None,
                       cache_dir: Path, slot: contextlib.ExitStack, warmup: int,
                       hold: Any = None) -> dict[str, Child]:
    """A built child per baseline to pair with the candidate, held in ``slot``: the ``known`` record's contenders,
    or every baseline when there is none (the node has no record yet, or a re-measurement asks for a fresh one), so
    that pairing measures the record too. Kept children of the same problem are reused; ``hold`` reserves a kept
    one's device memory (``_kept_hold``)."""
    names = known.contenders() if known is not None else list(req.timing.baselines)
    out: dict[str, Child] = {}
    try:
        for name in names:
            def build(bchild: Child, name: str = name) -> dict[str, Any]:
                return init_child(bchild, name, ref, candidate_path=None, warmup=warmup)
            key = (name, ref.info.source_hash, ref.info.scale, ref.device)
            out[name] = slot.enter_context(POOL.built_baseline(plan.baseline, cache_dir, key, build, hold))
    except (Rejected, ChildFailed) as e:
        raise Rejected(Status.BASELINE_ERROR, f"the {name} baseline failed: {e.reason}") from None
    return out


def timed(req: EvalRequest, ref: Reference, child, plan: Plan, known: BaselineRecord | None,
          children: dict[str, Child], bdir: Path, rng: random.Random, checks: CheckLog,
          stage: StageClock, cache_dir: Path) -> tuple[BaselineRecord, PairedRun]:
    """The timing phase, with the slot held: the candidate paired with the built baselines, each in its own child;
    with ``timing.processes`` above 1, then again in that many pairs of fresh processes in all, each with its share
    of the time cap; without a ``known`` record, the record is made from the baselines' calls timed here."""
    flush = req.timing.flush_for(timer_kind(req.device))
    subjects = {n: TimedSubject(c, ref, VerifyPolicy(), rng, CheckLog(), flush=flush, check=False)
                for n, c in children.items()}
    with stage("time"):
        baseline_ms = known.stats(known.fastest).median_ms if known is not None else ref.call_s * 1e3
        call_s = max(plan.call_s, baseline_ms / 1e3)
        timing = lim.timing_timeout(req, call_s, 1 + len(subjects))
        child.arm(lim.with_timeout(plan.candidate, timing))
        for s in subjects.values():
            s.child.arm(lim.with_timeout(plan.baseline, timing))
        candidate = TimedSubject(child, ref, req.verify, rng, checks, flush=flush)
        share = per_process(req.timing)
        runs = [paired_blocks(candidate, subjects, share, baseline_ms)]
        for _ in range(req.timing.processes - 1):
            _wait_for_a_fresh_pair(plan, [child, *children.values()], len(children), timing[0])
            runs.append(_paired_in_fresh_processes(req, ref, plan, list(children), cache_dir, rng, checks, share,
                                                   baseline_ms, call_s))
        paired = pooled(runs)
    if known is None:
        built = {n: {"compile_seconds": c.build_info.get("compile_seconds"),
                     "peak_rss_mb": round(c.peak_rss / (1 << 20), 1)} for n, c in children.items()}
        known = record_from_pairing(ref, device_name=integrity.device_name(req.device), timing=req.timing,
                                    directory=bdir, samples=paired.baselines, built=built,
                                    fresh=req.timing.rounds >= 2)
    return known, dataclasses.replace(paired, reused={n: c.reused for n, c in children.items()})


def _wait_for_a_fresh_pair(plan: Plan, idle: list[Child], baselines: int, timing_s: float) -> None:
    """Re-arm the first pair's children, idle while a pair of fresh processes is built and timed, with the wall clock
    that pair may take (its children's build limits and its timing), so that a slow build (a cold torch.compile on a
    busy host) does not run the idle ones past a deadline armed for timing alone."""
    seconds = plan.candidate.timeout_s + baselines * plan.baseline.timeout_s + timing_s
    why = (f"idle while a pair of fresh processes is built and timed: the candidate's build limit of "
           f"{plan.candidate.timeout_s:.0f} s, {baselines} baseline(s) at {plan.baseline.timeout_s:.0f} s and "
           f"{timing_s:.0f} s to time")
    for c in idle:
        c.arm(lim.with_timeout(c.limits, (seconds, why)))


def _paired_in_fresh_processes(req: EvalRequest, ref: Reference, plan: Plan, names: list[str], cache_dir: Path,
                               rng: random.Random, checks: CheckLog, timing: TimingPolicy, baseline_ms: float,
                               call_s: float) -> PairedRun:
    """One more pair of paired timing, in processes that have run nothing yet: the candidate built again in a new
    child and checked on one fresh trial before its timed calls (which are checked at random as in the first), the
    baselines built again in new children (never kept ones). The children end with it."""
    flush = req.timing.flush_for(timer_kind(req.device))
    with contextlib.ExitStack() as held:
        child = held.enter_context(POOL.take(plan.candidate, cache_dir, "candidate"))
        path = child.scratch / "candidate.py"
        path.write_text(req.candidate_source)
        ready = init_child(child, "candidate", ref, candidate_path=path, warmup=req.timing.warmup,
                           digest_inputs=req.verify.digest_inputs)
        verify_calls(child, ref, dataclasses.replace(req.verify, trials=1, probes=()), rng, checks)
        subjects: dict[str, TimedSubject] = {}
        for name in names:
            bchild = held.enter_context(POOL.take(plan.baseline, cache_dir, "baseline"))
            try:
                init_child(bchild, name, ref, candidate_path=None, warmup=req.timing.warmup)
            except (Rejected, ChildFailed) as e:
                raise Rejected(Status.BASELINE_ERROR, f"the {name} baseline failed: {e.reason}") from None
            bchild.arm(lim.with_timeout(plan.baseline, lim.timing_timeout(req, call_s, 1 + len(names))))
            subjects[name] = TimedSubject(bchild, ref, VerifyPolicy(), rng, CheckLog(), flush=flush, check=False)
        child.arm(lim.with_timeout(plan.candidate, lim.timing_timeout(req, call_s, 1 + len(names))))
        run = paired_blocks(TimedSubject(child, ref, req.verify, rng, checks, flush=flush), subjects, timing,
                            baseline_ms)
        audit(child, ready["settings_before"])
    return run
