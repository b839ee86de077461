"""One candidate, one device: static checks, sandboxed checks, paired timing against the baselines, roofline.

``evaluate`` never raises for a candidate's fault: every outcome is an ``EvalResult`` with one status. It raises
``BadInput`` only for files the user must fix (missing, unparsable, lacking Model/ModelNew/get_inputs).

Stages: static checks; the reference built here (trusted); the candidate's child (a warm spare when one is ready)
builds and is verified, and the baselines' children are built (or kept ones taken), all while the device is shared
with other candidates' builds and verifications; then, holding the timing slot alone, the candidate is timed in
alternating blocks against the baselines the node's record names (those within a few percent of the fastest),
each in its own clean child. A problem's first evaluation on a node pairs the candidate with every baseline, and
its baseline calls make the node's record, so no time goes to measuring the baselines separately.
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
from evaluators import device_memory, integrity, limits as lim, static_checks
from evaluators import inputs as inp
from evaluators.baseline import baseline_dir, default_cache_dir
from evaluators.judge import (CheckLog, Reference, Rejected, audit, build_reference,
                              host_clock_consistent, init_child, ping_overhead, timed_loop, timer_kind, verify_calls)
from evaluators.machines import cpu_model_name, nvidia_driver_version
from evaluators.policy import EvalRequest
from evaluators.profiling import profile_in_child, with_ncu, with_profile
from evaluators.problem import check_candidate_source
from evaluators.result import EvalResult, Status
from evaluators.sandbox import ChildFailed
from evaluators.timing_phase import VERIFY_MODE_CALLS, applied, baseline_children, make_plan, timed
from evaluators.timing_result import with_timing
from evaluators.warm import POOL, SPARE_IDLE_S

log = logging.getLogger(__name__)


def provenance(device: str, device_name: str) -> dict[str, Any]:
    return {
        "kernelswarm": tool_version, "torch": torch.__version__, "cuda": torch.version.cuda,
        "python": platform.python_version(), "host": socket.gethostname(), "cpu": cpu_model_name(),
        "device": device, "device_name": device_name, "threads": torch.get_num_threads(),
        "driver": nvidia_driver_version() if device.startswith("cuda") else None,
    }


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


# On a GPU whose evaluator shares it between evaluations: spares waiting per role (each holds a CUDA context, about
# half a GB of device memory), and kept baseline children (each holds a device-memory reservation while it waits)
GPU_SPARES_PER_ROLE = 3
GPU_KEPT_BASELINES = 16


def evaluate(req: EvalRequest, *, timing_slot: AbstractContextManager | None = None) -> EvalResult:
    """Evaluate one request. ``timing_slot``, when given, is held around the timing phase only (the baselines and
    the candidate's timed calls), so that the verification of several candidates may overlap on one device while
    timing has it to itself. Every result carries ``stage_s``, the wall seconds of each stage it reached."""
    stages = StageClock()
    if timing_slot is not None:
        POOL.retain(True)   # an evaluator that shares a device between evaluations lives on: keep spares warm
        if req.device.startswith("cuda") and hasattr(timing_slot, "shared"):
            # a GPU's evaluator holds many evaluations at once, each taking a candidate child and baseline children
            POOL.per_role = max(POOL.per_role, GPU_SPARES_PER_ROLE)
            POOL.max_built = max(POOL.max_built, GPU_KEPT_BASELINES)
    try:
        result = _evaluate(req, stages, timing_slot if timing_slot is not None else contextlib.nullcontext())
    finally:
        POOL.evaluation_done()
    broken = _device_context_error(req.device)
    if broken:
        result = dataclasses.replace(result, device_poisoned=True,
                                     reason=f"{result.reason}; the evaluator's device context failed: {broken}")
    return dataclasses.replace(result, stage_s=dict(stages.seconds))


def _device_context_error(device: str) -> str | None:
    """This process's own device context, checked after an evaluation: None when it still synchronises (and its
    cached blocks are returned to the device), else the error. Candidates run in children with contexts of their
    own, so only a fault of the device or of the reference's own calls lands here."""
    if not device.startswith("cuda") or not torch.cuda.is_initialized():
        return None
    try:
        torch.cuda.synchronize(torch.device(device))
        torch.cuda.empty_cache()    # this evaluation's reference data goes back to the device, not to a cache
    except RuntimeError as e:       # torch's CUDA errors (AcceleratorError included) are RuntimeErrors
        return str(e).splitlines()[0][:300]
    return None


def _reservation(req: EvalRequest, timing_slot: AbstractContextManager) -> AbstractContextManager:
    """On a GPU shared by several evaluations (a slot with ``reserve``), a hold on the device memory this one
    will need, taken before its reference first runs on the device (``evaluators.device_memory`` sizes it), so
    that evaluations whose data is large take turns instead of running each other, or this evaluator, out of
    memory. Kept baseline children hold reservations of their own while they wait (``_kept_hold``); when this one
    would wait, they are let go, the longest kept first, until it would not."""
    if not _shares_device_memory(req, timing_slot):
        return contextlib.nullcontext()
    capacity = device_memory.capacity_bytes(req.device)
    now, later = device_memory.phase_bytes(device_memory.data_bytes(req.problem_path, req.scale, req.device),
                                           capacity, device_memory.growth(req.problem_path, req.scale, req.device))
    if req.mode != "bench":         # no baselines' children: nothing to grow by
        now, later = now + later, 0
    if timing_slot.would_wait(now, capacity, later):
        POOL.drop_built(enough=lambda: not timing_slot.would_wait(now, capacity, later))
    return timing_slot.reserve(now, capacity, later)


def _grow_for_baselines(reservation: Any) -> None:
    """The reservation's growth for the baselines' children (``device_memory.phase_bytes``), taken before they
    are built; kept baseline children are let go, the longest kept first, while it would wait. Nothing off a
    shared device (``reservation`` None)."""
    if reservation is None:
        return
    if reservation.would_wait():
        POOL.drop_built(enough=lambda: not reservation.would_wait())
    reservation.grow()


def _kept_hold(req: EvalRequest, ref: Reference, timing_slot: AbstractContextManager):
    """For a baseline child kept after this evaluation: a reservation of its device memory, taken without waiting
    (None when the memory is not to be had: the child is then ended), or None off a shared device."""
    if not _shares_device_memory(req, timing_slot):
        return None
    capacity = device_memory.capacity_bytes(req.device)
    kept = device_memory.kept_bytes(inp.nbytes(list(ref.state_dict.values())) + ref.in_bytes + ref.out_bytes)
    return lambda: timing_slot.try_reserve(kept, capacity)


def _evaluate(req: EvalRequest, stage: StageClock, timing_slot: AbstractContextManager) -> EvalResult:
    with stage("static"):
        flags, early = _static(req)
    if early is not None:
        return early
    with contextlib.ExitStack() as held:
        with stage("wait_memory"):
            reservation = held.enter_context(_reservation(req, timing_slot))
        result = _held_or_out_of_memory(req, stage, timing_slot, flags, reservation)
    if not (_out_of_memory(result) and _shares_device_memory(req, timing_slot)):
        return result
    # out of memory while other evaluations shared the device: that verdict is the sharing's, not the candidate's.
    # The evaluation runs again with the device's memory to itself (kept baselines let go), and that verdict stands;
    # later evaluations of the problem reserve more. Unless the problem's own side ran out of memory alone here
    # before: running alone again would drain the device and end the same way.
    factor = device_memory.ran_out_shared(req.problem_path, req.scale, req.device)
    before = device_memory.failed_alone(req.problem_path, req.scale, req.device)
    if before is not None:
        return dataclasses.replace(result, reason=f"{result.reason}; not evaluated again alone: the problem ran out "
                                   f"of device memory alone on this device before ({before[:200]}); run it on a "
                                   "device with more memory or at a smaller scale",
                                   provenance={**result.provenance, "not_evaluated_alone": before[:300]})
    log.info("out of device memory while the device was shared (%s); evaluating again alone; later evaluations "
             "of the problem reserve %.2fx", result.reason[:200], factor)
    POOL.drop_built()
    capacity = device_memory.capacity_bytes(req.device)
    with contextlib.ExitStack() as held:
        with stage("wait_memory"):
            alone = held.enter_context(timing_slot.reserve(capacity, capacity))
        again = _held_or_out_of_memory(req, stage, timing_slot, flags, alone)
    if _out_of_memory(again) and _problems_side(again):
        device_memory.ran_out_alone(req.problem_path, req.scale, req.device, again.reason)
    return dataclasses.replace(again, provenance={**again.provenance, "evaluated_alone_after": result.reason[:300]})


def _problems_side(result: EvalResult) -> bool:
    """A verdict of the problem's side, not the candidate's: a baseline's, or the evaluator's own reference run."""
    return result.status in (Status.BASELINE_ERROR, Status.CRASHED) or \
        result.provenance.get("out_of_memory_in") == "evaluator"


def _shares_device_memory(req: EvalRequest, timing_slot: AbstractContextManager) -> bool:
    """Whether the evaluation runs on a GPU whose memory other evaluations share through ``timing_slot``."""
    return req.device.startswith("cuda") and hasattr(timing_slot, "reserve") and torch.cuda.is_available()


def _out_of_memory(result: EvalResult) -> bool:
    """A verdict that device memory ran out (in the candidate's child, a baseline's or this evaluator)."""
    reason = result.reason.lower()
    return result.status in (Status.RUNTIME_ERROR, Status.CRASHED, Status.BASELINE_ERROR, Status.COMPILE_ERROR) \
        and any(s in reason for s in ("cuda out of memory", "cuda error: out of memory", "out of device memory"))


def _held_or_out_of_memory(req: EvalRequest, stage: StageClock, timing_slot: AbstractContextManager,
                           flags: tuple[str, ...], reservation: Any) -> EvalResult:
    """``_evaluate_held``, with this evaluator's own running out of device memory (its reference's calls) made a
    verdict like the children's, so that the caller can tell it from a fault of the evaluator."""
    try:
        with contextlib.ExitStack() as cpu_work:
            cpu_work.enter_context(_off_timing(req, timing_slot, stage))
            return _evaluate_held(req, stage, timing_slot, flags, cpu_work, reservation)
    except torch.OutOfMemoryError as e:
        torch.cuda.empty_cache()
        return EvalResult(status=Status.RUNTIME_ERROR, device=req.device, reason="the evaluator ran out of device "
                          f"memory running the reference: {str(e).splitlines()[0][:300]}",
                          provenance={"out_of_memory_in": "evaluator"})


@contextlib.contextmanager
def _off_timing(req: EvalRequest, timing_slot: AbstractContextManager, stage: StageClock) -> Iterator[None]:
    """On a CPU device (whose cores run the timed calls and build the next candidates alike) with a slot that has
    ``building``: that hold, which keeps this work off another evaluation's timing while it may overlap other builds
    and verification; the wait for it counts as ``wait_device``. Elsewhere nothing: a GPU's builds run on the host's
    cores, beside its timing."""
    if timer_kind(req.device) != "cpu" or not hasattr(timing_slot, "building"):
        yield
        return
    with contextlib.ExitStack() as held:
        with stage("wait_device"):
            held.enter_context(timing_slot.building())
        yield


def _evaluate_held(req: EvalRequest, stage: StageClock, timing_slot: AbstractContextManager,
                   flags: tuple[str, ...], cpu_work: contextlib.ExitStack, reservation: Any) -> EvalResult:
    """The evaluation after its static checks, with its share of the device's memory held (``reservation``, None
    off a shared device; it grows before the baselines' children are built). ``cpu_work`` holds ``_off_timing``
    for the reference's build and the candidate's start-up and build; it is let go before the verification (which
    takes verify slots) and taken again for the baselines' builds."""
    seed = req.verify.seed if req.verify.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    cache_dir = Path(req.cache_dir) if req.cache_dir else default_cache_dir()
    bdir = baseline_dir(req.cache_dir)
    base = dict(device=req.device, static_flags=flags, policy={**_policy(req), "seed": seed})
    try:
        with stage("build"):
            ref = build_reference(req.problem_path, req.scale, req.device, seed)
    except Rejected as r:
        return EvalResult(status=r.status, reason=r.reason, **base)
    if req.device.startswith("cuda"):
        device_memory.remember(req.problem_path, req.scale, req.device,
                               inp.nbytes(list(ref.state_dict.values())) + ref.in_bytes + ref.out_bytes)
    device_name = integrity.device_name(req.device)
    plan = make_plan(req, ref, device_name, bdir)
    base["policy"] = {**base["policy"], **applied(plan)}
    checks = CheckLog()
    ready: dict[str, Any] = {}
    run = paired = record = None
    profiled: dict[str, Any] = {}
    try:
        with contextlib.ExitStack() as slot, contextlib.ExitStack() as sharing:
            with POOL.take(plan.candidate, cache_dir, "candidate") as child:
                # the children needed next start while this one builds and is verified
                if req.mode == "bench":
                    POOL.prepare(plan.baseline, cache_dir, "baseline")
                if POOL.retaining:
                    POOL.prepare(plan.candidate, cache_dir, "candidate")
                with stage("spawn"):   # the child's start-up: the first ping waits for its imports
                    cand_path = child.scratch / "candidate.py"
                    cand_path.write_text(req.candidate_source)
                    ping = ping_overhead(child)
                try:
                    with stage("build"):
                        # one call, which compiles: the build holds nothing, so it overlaps other candidates'
                        # timing (its kernels run once); the rest of the warm-up is verification and calibration
                        ready = init_child(child, "candidate", ref, candidate_path=cand_path, warmup=_build_calls(
                            req, timing_slot), digest_inputs=req.verify.digest_inputs)
                    cpu_work.close()    # the build is done; verification holds the device's verify slots
                    with stage("verify"):
                        # verifications may overlap with each other on this device, never with timing: each call's
                        # device work holds a verify slot, the outputs' way through the pipe holds none
                        verify_calls(child, ref, req.verify, rng, checks,
                                     hold=getattr(timing_slot, "shared", None))
                        if req.mode == "verify":
                            if hasattr(timing_slot, "shared"):
                                sharing.enter_context(timing_slot.shared())
                            run = timed_loop(child, ref, req.verify, req.timing, rng, checks,
                                             n_calls=VERIFY_MODE_CALLS, flush=False)
                        sharing.close()
                    if req.mode == "bench":
                        # waiting for the baselines' builds and the slot is no part of the candidate's time
                        child.arm(lim.with_timeout(plan.candidate, (SPARE_IDLE_S, "waiting for the timing slot")))
                        # the baselines' children are built (or kept ones taken) once the candidate is verified,
                        # holding nothing, like the candidate's build; only timed calls wait for the device alone
                        # the stored record to pair against; none when missing or a re-measurement asks afresh
                        known = plan.record if req.timing.rounds < 2 else None
                        with stage("wait_memory"):      # the baselines' children's share of the device's memory
                            _grow_for_baselines(reservation)
                        with _off_timing(req, timing_slot, stage), stage("baseline"):
                            subjects = baseline_children(req, ref, plan, known, cache_dir, slot, _build_calls(
                                req, timing_slot), _kept_hold(req, ref, timing_slot))
                        POOL.settle()       # no start-up of this evaluation's spares competes with a timed call
                        with stage("wait_device"):      # for the device alone: other candidates' timing
                            slot.enter_context(timing_slot)
                            POOL.settle()   # nor one that another evaluation's build started meanwhile
                        record, paired = timed(req, ref, child, plan, known, subjects, bdir, rng, checks, stage,
                                               cache_dir)
                        # of the time stage, the checks of timed calls (reference, outputs through the pipe)
                        stage.seconds["time_checks"] = round(paired.check_s, 4)
                        # the device's own time in the timed calls (events on a GPU): a floor on its busy time
                        stage.seconds["timed_calls"] = round(
                            (sum(paired.candidate.samples_ns) + sum(sum(v) for v in paired.baselines.values()))
                            / 1e9, 4)
                        run = paired.candidate
                except Rejected as first:
                    # a replaced judge or changed settings explains a failed check better than the check itself
                    if ready:
                        audit(child, ready["settings_before"])
                    raise first
                with stage("verify"):
                    audit(child, ready["settings_before"])
                if req.mode == "bench":
                    with stage("profile"):      # in the judged child, built and warm, with the device still alone
                        profiled = profile_in_child(child, ref)
            inconsistent = host_clock_consistent(run, ping) if req.mode == "bench" else None
            if inconsistent:
                raise Rejected(Status.TIMING_INCONSISTENT, inconsistent)
            if req.timing.ncu and profiled:
                with stage("ncu"):      # after the judged child has ended, with the device still alone
                    profiled = with_ncu(profiled, ref, req.candidate_source, plan.candidate, cache_dir)
    except (Rejected, ChildFailed) as r:
        base["policy"] = {**base["policy"], **ready.get("applied_limits", {})}
        return EvalResult(status=r.status, reason=r.reason, device_name=ready.get("device_name", ""),
                          compile_seconds=ready.get("compile_seconds"), checked_calls=checks.checks,
                          state_dict_loaded=ready.get("state_dict_loaded"), **_errors(checks), **base)
    base["policy"] = {**base["policy"], **ready.get("applied_limits", {})}
    device_name = ready.get("device_name", device_name)
    result = EvalResult(status=Status.ACCEPTED, reason=f"passed {checks.checks} checks "
                        f"({req.verify.trials} trials, {len(checks.probe_verdicts)} probes, timed calls)",
                        device_name=device_name, compile_seconds=ready.get("compile_seconds"),
                        checked_calls=checks.checks, state_dict_loaded=ready.get("state_dict_loaded"),
                        provenance=provenance(req.device, device_name), **_errors(checks), **base)
    if req.mode == "verify":
        return result
    return with_profile(with_timing(req, ref, result, record, paired, bdir), profiled)


def _build_calls(req: EvalRequest, timing_slot: AbstractContextManager) -> int:
    """Calls a build makes: with a shared device slot (a device shared by several evaluations) one, the call that
    compiles, since a build holds nothing and may overlap another candidate's timing; the remaining warm-up calls
    come as verification and as calibration inside the timing slot. Alone on its device, the policy's warm-up."""
    return 1 if hasattr(timing_slot, "shared") else req.timing.warmup


def _errors(checks: CheckLog) -> dict[str, Any]:
    return dict(max_abs_err=checks.max_abs_err if checks.checks else None,
                max_rel_err=checks.max_rel_err if checks.checks else None,
                rel_fro_err=checks.rel_fro_err if checks.checks else None,
                probe_verdicts=tuple(checks.probe_verdicts))


