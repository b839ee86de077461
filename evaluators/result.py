"""Typed outcome of evaluating one candidate on one device.

Every evaluation ends in exactly one ``Status``. Metrics are plain optional floats: a missing time is ``None``,
never a sentinel such as ``-1``.
"""
from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any


class Status(str, enum.Enum):
    """Why a candidate was accepted or not. The values are the population's ``status`` column."""

    ACCEPTED = "accepted"
    # the candidate file itself
    STATIC_VIOLATION = "static_violation"      # AST check found a forbidden construct (line named in reason)
    COMPILE_ERROR = "compile_error"            # import, build or construction of ModelNew failed
    # the child process
    RUNTIME_ERROR = "runtime_error"            # forward raised
    TIMEOUT = "timeout"                        # wall-clock limit reached, process tree killed
    OUT_OF_MEMORY = "out_of_memory"            # memory limit reached, process tree killed
    CRASHED = "crashed"                        # killed by a signal or non-zero exit
    EARLY_EXIT = "early_exit"                  # exited (even with code 0) before the protocol finished
    RESOURCE_ABUSE = "resource_abuse"          # too many processes or threads, file size limit
    # outputs
    BAD_OUTPUT = "bad_output"                  # not a plain dense tensor of the right shape, dtype, device
    OUTPUT_ALIASES_INPUT = "output_aliases_input"
    INPUT_MUTATED = "input_mutated"
    MISMATCH = "mismatch"                      # outside tolerance on fresh sample inputs
    DOMAIN_MISMATCH = "domain_mismatch"        # right on the sample distribution, wrong on domain probes
    TIMED_MISMATCH = "timed_mismatch"          # a randomly checked timed call was wrong (call counting, caching)
    DEFERRED_WORK = "deferred_work"            # output changed after forward returned (threads, side streams)
    # the judge
    TAMPERING = "tampering"                    # timers, sync, comparison functions or torch ops replaced
    GLOBAL_STATE_CHANGED = "global_state_changed"  # thread count, precision flags or similar changed
    TIMING_INCONSISTENT = "timing_inconsistent"    # in-child timings disagree with the host clock
    SUSPECT_SPEEDUP = "suspect_speedup"        # faster than the roofline allows; held for a person to approve
    # the problem, not the candidate
    BASELINE_ERROR = "baseline_error"

    @property
    def accepted(self) -> bool:
        return self is Status.ACCEPTED


@dataclasses.dataclass(frozen=True)
class TimeStats:
    """Summary of raw timing samples in milliseconds: median with a 95% confidence interval."""

    median_ms: float
    ci_low_ms: float
    ci_high_ms: float
    count: int
    min_ms: float
    max_ms: float

    @property
    def rel_half_width(self) -> float:
        return (self.ci_high_ms - self.ci_low_ms) / 2.0 / self.median_ms if self.median_ms > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """What one candidate is worth on one device."""

    status: Status
    reason: str
    device: str = "cpu"
    device_name: str = ""
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    rel_fro_err: float | None = None
    probe_verdicts: tuple[tuple[str, str], ...] = ()   # (probe name, "ok" or what failed)
    candidate: TimeStats | None = None
    eager: TimeStats | None = None
    compile: TimeStats | None = None
    speedup: float | None = None                       # over the faster of eager and compile
    speedup_ci: tuple[float, float] | None = None
    compile_seconds: float | None = None
    warnings: tuple[str, ...] = ()
    static_flags: tuple[str, ...] = ()
    policy: dict[str, Any] = dataclasses.field(default_factory=dict)
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    profile: dict[str, Any] = dataclasses.field(default_factory=dict)
    # wall seconds per stage of this evaluation: static, spawn, build, verify, time, baseline (absent: not reached)
    stage_s: dict[str, float] = dataclasses.field(default_factory=dict)
    checked_calls: int = 0                             # candidate calls whose outputs were compared
    state_dict_loaded: bool | None = None              # the candidate took the reference's weights
    timing: dict[str, Any] = dataclasses.field(default_factory=dict)   # how the times were taken: blocks, baselines
    # the evaluator's own device context failed (a candidate's child cannot break it, a fault of the device can):
    # the worker holding it must not be reused
    device_poisoned: bool = False

    @property
    def verdict(self) -> str:
        return "accepted" if self.status is Status.ACCEPTED else "rejected"

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``kswarm verify/bench --json``."""
        def ms(t: TimeStats | None) -> float | None:
            return None if t is None else t.median_ms
        return {
            "verdict": self.verdict,
            "status": self.status.value,
            "reason": self.reason,
            "device": self.device,
            "device_name": self.device_name,
            "max_abs_err": self.max_abs_err,
            "max_rel_err": self.max_rel_err,
            "rel_fro_err": self.rel_fro_err,
            "candidate_ms": ms(self.candidate),
            "eager_ms": ms(self.eager),
            "compile_ms": ms(self.compile),
            "speedup": self.speedup,
            "speedup_ci": list(self.speedup_ci) if self.speedup_ci else None,
            "candidate_time": self.candidate.to_dict() if self.candidate else None,
            "eager_time": self.eager.to_dict() if self.eager else None,
            "compile_time": self.compile.to_dict() if self.compile else None,
            "compile_seconds": self.compile_seconds,
            "probe_verdicts": [list(p) for p in self.probe_verdicts],
            "warnings": list(self.warnings),
            "static_flags": list(self.static_flags),
            "policy": self.policy,
            "provenance": self.provenance,
            "profile": self.profile,
            "stage_s": self.stage_s,
            "checked_calls": self.checked_calls,
            "state_dict_loaded": self.state_dict_loaded,
            "timing": self.timing,
            "device_poisoned": self.device_poisoned,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "EvalResult":
        def ts(x: dict[str, Any] | None) -> TimeStats | None:
            return None if x is None else TimeStats(**x)
        return EvalResult(
            status=Status(d["status"]), reason=d["reason"], device=d.get("device", "cpu"),
            device_name=d.get("device_name", ""), max_abs_err=d.get("max_abs_err"),
            max_rel_err=d.get("max_rel_err"), rel_fro_err=d.get("rel_fro_err"),
            probe_verdicts=tuple(tuple(p) for p in d.get("probe_verdicts", [])),
            candidate=ts(d.get("candidate_time")), eager=ts(d.get("eager_time")),
            compile=ts(d.get("compile_time")), speedup=d.get("speedup"),
            speedup_ci=tuple(d["speedup_ci"]) if d.get("speedup_ci") else None,
            compile_seconds=d.get("compile_seconds"), warnings=tuple(d.get("warnings", [])),
            static_flags=tuple(d.get("static_flags", [])), policy=d.get("policy", {}),
            provenance=d.get("provenance", {}), profile=d.get("profile", {}),
            stage_s={k: float(v) for k, v in d.get("stage_s", {}).items()},
            checked_calls=int(d.get("checked_calls") or 0), state_dict_loaded=d.get("state_dict_loaded"),
            timing=d.get("timing", {}), device_poisoned=bool(d.get("device_poisoned", False)),
        )
