"""One candidate, one device: static checks, sandboxed checks, timing against the baselines, roofline.

``evaluate`` never raises for a candidate's fault: every outcome is an ``EvalResult`` with one status. It raises
``BadInput`` only for files the user must fix (missing, unparsable, lacking Model/ModelNew/get_inputs).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import platform
import random
import re
import socket
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Iterator

import torch

from evaluators import __version__ as tool_version
from evaluators import static_checks
from evaluators.baseline import cached_baselines
from evaluators.judge import (CheckLog, Rejected, audit, build_reference, host_clock_consistent, init_child,
                              ping_overhead, timed_loop, timer_kind, verify_calls)
from evaluators.machines import cpu_model_name, hardware_class, machine_model, nvidia_driver_version
from evaluators.policy import EvalRequest
from evaluators.problem import check_candidate_source
from evaluators.profile import problem_cost
from evaluators.profiling import with_profile
from evaluators.result import EvalResult, Status, TimeStats
from evaluators.sandbox import Child, ChildFailed, SandboxLimits
from evaluators.stats import speedup as speedup_ci
from evaluators.stats import summarize

log = logging.getLogger(__name__)
VERIFY_MODE_CALLS = 30


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "kernelswarm"


def provenance(device: str, device_name: str) -> dict[str, Any]:
    return {
        "kernelswarm": tool_version, "torch": torch.__version__, "cuda": torch.version.cuda,
        "python": platform.python_version(), "host": socket.gethostname(), "cpu": cpu_model_name(),
        "device": device, "device_name": device_name, "threads": torch.get_num_threads(),
        "driver": nvidia_driver_version() if device.startswith("cuda") else None,
    }


def _limits(req: EvalRequest) -> SandboxLimits:
    v = req.verify
    return SandboxLimits(timeout_s=v.timeout_s, memory_mb=v.memory_mb, max_processes=v.max_processes,
                         max_file_mb=v.max_file_mb, extra_writable=tuple(v.extra_writable),
                         confine_writes=v.confine_writes, device=req.device)


# A source that names none of these runs unchanged on the CPU, so its correctness can be checked there first.
_DEVICE_BOUND = re.compile(r"\b(triton|cuda|mps|load_inline|cpp_extension|compile)\b")
# Verdicts about the candidate's own correctness: a CPU run that gives one of these spares the device. Anything
# else (a crash, a timeout, an error the CPU alone may raise) leaves the verdict to the target device.
_CPU_VERDICTS = frozenset({Status.BAD_OUTPUT, Status.OUTPUT_ALIASES_INPUT, Status.INPUT_MUTATED, Status.MISMATCH,
                           Status.DOMAIN_MISMATCH, Status.TIMED_MISMATCH, Status.DEFERRED_WORK, Status.TAMPERING,
                           Status.GLOBAL_STATE_CHANGED})


def precheck(req: EvalRequest) -> EvalResult | None:
    """The cheap checks before any device time: parse and static rules; then, for a device other than the CPU and
    a candidate that runs unchanged on the CPU (plain torch: no Triton, CUDA, extension or compiler), the full
    verification on the CPU at the problem's default size. None when the candidate may go on to its device."""
    early = _static(req)[1]
    if early is not None or req.device == "cpu" or _DEVICE_BOUND.search(req.candidate_source):
        return early
    on_cpu = evaluate(dataclasses.replace(req, device="cpu", mode="verify", scale="default"))
    if on_cpu.status not in _CPU_VERDICTS:
        return None
    return dataclasses.replace(on_cpu, reason=f"on the CPU, before any {req.device} time: {on_cpu.reason}",
                               policy={**on_cpu.policy, "checked_on": "cpu", "target_device": req.device})


def _static(req: EvalRequest) -> tuple[tuple[str, ...], EvalResult | None]:
    """The static findings, and the rejection they make when the policy rejects on them."""
    check_candidate_source(req.candidate_source)
    flags = tuple(f.message for f in static_checks.check_source(req.candidate_source))
    if flags and req.verify.static == "reject":
        return flags, EvalResult(status=Status.STATIC_VIOLATION, reason=flags[0], device=req.device,
                                 static_flags=flags, policy=_policy(req))
    return flags, None


def _policy(req: EvalRequest) -> dict[str, Any]:
    return {"verify": req.verify.to_dict(), "timing": req.timing.to_dict(), "mode": req.mode, "scale": req.scale,
            "tolerance_rule": "|out-ref| <= atol*max(1,rms(ref)) + rtol*|ref|, plus 4x the float32 reference's own "
                              "rounding against a float64 reference where a call is ill-conditioned; NaN/Inf only "
                              "where the reference has them; relative Frobenius error bounded"}


class StageClock:
    """Wall seconds per stage of one evaluation, summed over the stage's visits."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.monotonic() - t0, 4)


def evaluate(req: EvalRequest, *, timing_slot: AbstractContextManager | None = None) -> EvalResult:
    """Evaluate one request. ``timing_slot``, when given, is held around the timing phase only (the candidate's
    timed calls and the baselines), so that the verification of several candidates may overlap on one device while
    timing has it to itself. Every result carries ``stage_s``, the wall seconds of each stage it reached."""
    stages = StageClock()
    result = _evaluate(req, stages, timing_slot if timing_slot is not None else contextlib.nullcontext())
    return dataclasses.replace(result, stage_s=dict(stages.seconds))


def _evaluate(req: EvalRequest, stage: StageClock, timing_slot: AbstractContextManager) -> EvalResult:
    with stage("static"):
        flags, early = _static(req)
    if early is not None:
        return early
    seed = req.verify.seed if req.verify.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    cache_dir = Path(req.cache_dir) if req.cache_dir else default_cache_dir()
    base = dict(device=req.device, static_flags=flags, policy={**_policy(req), "seed": seed})
    try:
        with stage("build"):
            ref = build_reference(req.problem_path, req.scale, req.device, seed)
    except Rejected as r:
        return EvalResult(status=r.status, reason=r.reason, **base)
    limits = _limits(req)
    timer = timer_kind(req.device)
    checks = CheckLog()
    t_start = time.monotonic()
    ready: dict[str, Any] = {}
    run = None
    timed: tuple[Any, ...] | None = None
    try:
        with contextlib.ExitStack() as slot:
            with Child(limits, cache_dir, label="candidate") as child:
                with stage("spawn"):   # the child's start-up: the first ping waits for its imports
                    cand_path = child.scratch / "candidate.py"
                    cand_path.write_text(req.candidate_source)
                    ping = ping_overhead(child)
                try:
                    with stage("build"):
                        ready = init_child(child, "candidate", ref, candidate_path=cand_path,
                                           warmup=req.timing.warmup)
                    with stage("verify"):
                        verify_calls(child, ref, req.verify, rng, checks)
                        if req.mode == "verify":
                            run = timed_loop(child, ref, req.verify, req.timing, rng, checks,
                                             n_calls=VERIFY_MODE_CALLS, flush=False)
                    if req.mode == "bench":
                        slot.enter_context(timing_slot)
                        with stage("time"):
                            run = timed_loop(child, ref, req.verify, req.timing, rng, checks,
                                             flush=req.timing.flush_for(timer))
                except Rejected as first:
                    # a replaced judge or changed settings explains a failed check better than the check itself
                    if ready:
                        audit(child, ready["settings_before"])
                    raise first
                with stage("verify"):
                    audit(child, ready["settings_before"])
            inconsistent = host_clock_consistent(run, ping) if req.mode == "bench" else None
            if inconsistent:
                raise Rejected(Status.TIMING_INCONSISTENT, inconsistent)
            verify_seconds = round(time.monotonic() - t_start, 3)
            device_name = ready.get("device_name", "")
            if req.mode == "bench":
                # the baselines in clean children, with the timing slot still held
                with stage("baseline"):
                    timed = _baselines(req, ref, device_name, limits, cache_dir, rng)
    except (Rejected, ChildFailed) as r:
        base["policy"] = {**base["policy"], **ready.get("applied_limits", {})}
        return EvalResult(status=r.status, reason=r.reason, device_name=ready.get("device_name", ""),
                          compile_seconds=ready.get("compile_seconds"), **_errors(checks), **base)
    policy = {**base["policy"], **ready.get("applied_limits", {}),
              "state_dict_loaded": ready.get("state_dict_loaded"), "checked_calls": checks.checks,
              "verify_seconds": verify_seconds}
    base["policy"] = policy
    result = EvalResult(status=Status.ACCEPTED, reason=f"passed {checks.checks} checks "
                        f"({req.verify.trials} trials, {len(checks.probe_verdicts)} probes, timed calls)",
                        device_name=device_name, compile_seconds=ready.get("compile_seconds"),
                        provenance=provenance(req.device, device_name), **_errors(checks), **base)
    if req.mode == "verify":
        return result
    return with_profile(_with_timing(req, ref, result, run.samples_ns, timed), req, ref, limits, cache_dir)


def _errors(checks: CheckLog) -> dict[str, Any]:
    return dict(max_abs_err=checks.max_abs_err if checks.checks else None,
                max_rel_err=checks.max_rel_err if checks.checks else None,
                rel_fro_err=checks.rel_fro_err if checks.checks else None,
                probe_verdicts=tuple(checks.probe_verdicts))


def _baselines(req: EvalRequest, ref, device_name: str, limits: SandboxLimits, cache_dir: Path,
               rng: random.Random) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The baselines before the candidate (cached) and, with two rounds or more, again after it (fresh)."""
    before = cached_baselines(ref, device_name=device_name, timing=req.timing, limits=limits, cache_dir=cache_dir,
                              rng=rng)
    after = None
    if req.timing.rounds >= 2:
        after = cached_baselines(ref, device_name=device_name, timing=req.timing, limits=limits,
                                 cache_dir=cache_dir, rng=rng, fresh=True)
    return before, after


def _with_timing(req: EvalRequest, ref, result: EvalResult, samples: list[int],
                 timed: tuple[dict[str, Any], dict[str, Any] | None]) -> EvalResult:
    cand = summarize(samples)
    warnings: list[str] = []
    before, after = timed
    stats: dict[str, TimeStats] = {}
    for name in req.timing.baselines:
        samples_b = list(before[name]["samples_ns"])
        if after is not None:
            first, second = summarize(before[name]["samples_ns"]), summarize(after[name]["samples_ns"])
            drift = abs(second.median_ms - first.median_ms) / first.median_ms
            if drift > max(2 * req.timing.ci_target, first.rel_half_width + second.rel_half_width):
                warnings.append(f"the {name} baseline drifted by {drift:.1%} between before and after the "
                                "candidate; the machine is not quiet, treat the speedup with care")
            samples_b += after[name]["samples_ns"]
        stats[name] = summarize(samples_b)
    best_name = min(stats, key=lambda k: stats[k].median_ms)
    sp, sp_ci = speedup_ci(cand, stats[best_name])
    overhead_ms = req.timing.launch_overhead_us / 1000
    if req.device != "cpu" and stats[best_name].median_ms < overhead_ms:
        warnings.append(f"the faster baseline takes {stats[best_name].median_ms * 1000:.1f} us per call, so launch "
                        "overhead dominates; use a larger scale (--scale large) to tell kernels apart")
    if cand.rel_half_width > req.timing.ci_target:
        warnings.append(f"the candidate's CI is +-{cand.rel_half_width:.1%}, wider than the target "
                        f"{req.timing.ci_target:.0%} (time cap reached)")
    hw = hardware_class(req.device, result.device_name)
    cost = problem_cost(ref)
    # the floor no implementation can beat: moving its inputs and outputs once at peak bandwidth
    floor_s = machine_model(hw).floor_seconds(0.0, cost["bytes"])
    profile = {**cost, "hardware": hw, "floor_ms": floor_s * 1e3,
               "roofline_fraction": (floor_s * 1e3) / cand.median_ms if cand.median_ms > 0 else None,
               "faster_baseline": best_name}
    out = dataclasses.replace(result, candidate=cand, eager=stats.get("eager"), compile=stats.get("compile"),
                              speedup=sp, speedup_ci=sp_ci, warnings=tuple(warnings), profile=profile,
                              reason=result.reason + f"; {sp:.2f}x over {best_name}")
    if floor_s * 1e3 > cand.ci_high_ms:
        return dataclasses.replace(out, status=Status.SUSPECT_SPEEDUP, reason=(
            f"measured {cand.median_ms:.4f} ms, below the roofline floor of {floor_s * 1e3:.4f} ms on {hw}; "
            "held out of the Pareto front until a person approves it"))
    return out
