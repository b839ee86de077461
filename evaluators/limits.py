"""Limits that follow the problem: a child's resident memory from the reference's measured footprint, and its wall
clock from the reference's call time and the backend's compile allowance; its CPU time follows the wall-clock
ceiling. Each limit carries the reason it has that value, which a rejection quotes."""
from __future__ import annotations

import dataclasses
import os
import re

from evaluators.policy import EvalRequest
from evaluators.sandbox import SandboxLimits

START_UP_S = 60.0          # interpreter, torch import and device context, on a loaded host
PLAIN_BUILD_S = 60.0       # building a plain torch module: no compiler involved
CALL_SLACK = 50.0          # a call may take this many times the reference's before it counts as a hang
# a source that names one of these compiles something (torch.compile, Triton, an inline C++/CUDA extension)
_COMPILES = re.compile(r"\b(triton|load_inline|cpp_extension|compile|cuda)\b")
TORCH_OVERHEAD_MB = 1024   # a child's own footprint: interpreter, torch, device libraries
CPU_WALL_MULTIPLE = 2.0    # a candidate's CPU-time limit by default: this many wall-clock ceilings per usable CPU
CPU_TIME_MAX_S = 2.0**40   # RLIMIT_CPU takes whole seconds in 64 bits; an infinite ceiling gets this


def compile_allowance(req: EvalRequest, subject_source: str | None) -> float:
    """Seconds a subject may take to build: the policy's allowance for a compiling backend, else a minute."""
    if subject_source is None or _COMPILES.search(subject_source):
        return req.verify.compile_allowance_s
    return min(PLAIN_BUILD_S, req.verify.compile_allowance_s)


def memory_limit(req: EvalRequest, footprint_mb: float | None, estimate_mb: float) -> tuple[int, str]:
    """The resident memory limit of a child's tree, and why: ``verify.memory_mb`` when set; otherwise a multiple of
    the reference's measured footprint (the eager baseline's peak resident memory), or of an estimate until one is
    measured, never below the floor."""
    v = req.verify
    if v.memory_mb is not None:
        return v.memory_mb, "set by verify.memory_mb"
    base, what = (footprint_mb, "measured footprint") if footprint_mb else (estimate_mb, "estimated footprint")
    follows = int(v.memory_multiple * base)
    if follows <= v.memory_floor_mb:
        return v.memory_floor_mb, (f"the floor verify.memory_floor_mb; {v.memory_multiple:g}x the reference's {what} "
                                   f"of {base:.0f} MB is less")
    return follows, f"{v.memory_multiple:g}x the reference's {what} of {base:.0f} MB"


def _capped(req: EvalRequest, seconds: float, why: str) -> tuple[float, str]:
    if seconds > req.verify.timeout_s:
        return req.verify.timeout_s, f"verify.timeout_s; the problem would allow {seconds:.0f} s"
    return seconds, why


def build_timeout(req: EvalRequest, subject_source: str | None, calls: int, call_s: float) -> tuple[float, str]:
    """The wall clock for a child's start-up, build and ``calls`` checked calls."""
    allowance = compile_allowance(req, subject_source)
    calls_s = CALL_SLACK * calls * call_s
    return _capped(req, START_UP_S + allowance + calls_s,
                   f"{START_UP_S:.0f} s start-up + {allowance:.0f} s to build + {CALL_SLACK:g}x the reference's "
                   f"{call_s * 1e3:.1f} ms per call over {calls} calls")


def timing_timeout(req: EvalRequest, call_s: float, subjects: int) -> tuple[float, str]:
    """The wall clock for the timing phase: every subject's share of the time cap, and the calls any sampling
    rule may still make past it."""
    share = 2 * req.timing.time_cap_s * subjects
    calls_s = CALL_SLACK * call_s * req.timing.min_blocks * 8
    return _capped(req, START_UP_S + share + calls_s,
                   f"{START_UP_S:.0f} s + twice the time cap for each of {subjects} subjects + {CALL_SLACK:g}x the "
                   f"reference's {call_s * 1e3:.1f} ms per call")


def usable_cpus() -> int:
    """The CPUs this process (and so a child it starts) may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):     # macOS has no affinity
        return max(1, os.cpu_count() or 1)


def cpu_time_limit(req: EvalRequest) -> tuple[float, str]:
    """The CPU seconds a candidate's process may use (RLIMIT_CPU), and why: ``verify.cpu_time_s`` when set (the
    campaign file's ``[sandbox] cpu_time_s``); otherwise the wall-clock ceiling twice over (a child has it once to
    build and check, once to time) on every CPU the child may run on, so that a child within its wall clock never
    reaches it. It is a backstop that holds where the parent's watchdog does not: a thread left spinning while the
    child waits for the timing slot, a process forked out of the tree, a parent that died."""
    v = req.verify
    if v.cpu_time_s is not None:
        return v.cpu_time_s, "set by [sandbox] cpu_time_s"
    cpus = usable_cpus()
    return (min(CPU_WALL_MULTIPLE * v.timeout_s * cpus, CPU_TIME_MAX_S),
            f"{CPU_WALL_MULTIPLE:g}x the wall-clock ceiling verify.timeout_s of {v.timeout_s:.0f} s on each of "
            f"{cpus} CPUs")


def sandbox_limits(req: EvalRequest, *, memory: tuple[int, str], timeout: tuple[float, str]) -> SandboxLimits:
    v = req.verify
    cpu = cpu_time_limit(req)
    return SandboxLimits(timeout_s=timeout[0], timeout_why=timeout[1], memory_mb=memory[0], memory_why=memory[1],
                         cpu_time_s=cpu[0], cpu_time_why=cpu[1],
                         max_processes=v.max_processes, max_file_mb=v.max_file_mb,
                         extra_writable=tuple(v.extra_writable), confine_writes=v.confine_writes, device=req.device)


def with_timeout(limits: SandboxLimits, timeout: tuple[float, str]) -> SandboxLimits:
    return dataclasses.replace(limits, timeout_s=timeout[0], timeout_why=timeout[1])
