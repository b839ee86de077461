"""Verification and timing policies, and the request the evaluator pipeline takes.

Defaults follow the project's verification policy; every field is recorded in each result so that a verdict can be
reproduced. Policies are frozen: they are built once at an entry point and passed down.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Literal

PROBES = ("scaled_normal", "large_magnitude", "negative", "mixed_sign")


@dataclasses.dataclass(frozen=True)
class VerifyPolicy:
    trials: int = 5                      # fresh-seed sample trials
    probes: tuple[str, ...] = PROBES     # domain probes, each one trial on a wider distribution
    atol_fp32: float = 1e-4
    rtol_fp32: float = 1e-4
    atol_half: float = 1e-2              # bf16 and fp16
    rtol_half: float = 1e-2
    timed_checks: int = 3                # randomly chosen timed calls whose outputs are checked too
    # a checked timed call whose outputs hold more than 64 MiB is compared on this many elements of each output,
    # drawn after the call (the trials and probes compare every element); 0 compares every element
    timed_check_elements: int = 1 << 20
    # of the trials and probes whose outputs hold more than 64 MiB, this many are compared on every element (the
    # first trial, the rest drawn by the parent, which the child learns only after its call); the others on
    # timed_check_elements elements per output drawn after the call, and on the whole shapes
    whole_checks: int = 2
    static: Literal["reject", "warn"] = "reject"
    # the most wall clock a child may take for its build and checks, and again for its timing; below this ceiling
    # the limit follows the problem: start-up, the backend's compile allowance and the reference's own call time
    # over the calls to be made
    timeout_s: float = 1800.0
    compile_allowance_s: float = 600.0   # the build allowance of a compiling backend (plain torch gets 60 s)
    # the resident memory limit of a child's process tree; None follows the problem: memory_multiple times the
    # reference's measured footprint, at least memory_floor_mb
    memory_mb: int | None = None
    memory_floor_mb: int = 8192
    memory_multiple: float = 4.0
    max_processes: int = 8               # processes in the child's tree
    max_file_mb: int = 1024              # largest file the child may write
    # CPU seconds a candidate's process may use (RLIMIT_CPU); None follows the wall clock: twice timeout_s (a child
    # has it once to build and check, once to time) on each CPU the evaluator may run on
    cpu_time_s: float | None = None
    seed: int | None = None              # None draws a fresh seed per evaluation
    extra_writable: tuple[str, ...] = () # folders a candidate may write to besides its scratch (debugging, tests)
    confine_writes: bool = True          # Landlock: writes only to scratch, build caches, devices, extra_writable
    # inputs above 1 MiB checked unchanged by a keyed digest on the device (evaluators/digest.py); false sends
    # every input back whole after each checked call and compares it byte for byte (slow for large inputs)
    digest_inputs: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TimingPolicy:
    warmup: int = 3                      # untimed calls before timing
    min_samples: int = 10
    max_samples: int = 2000
    ci_target: float = 0.02              # relative half-width of the 95% CI of the median
    time_cap_s: float = 10.0             # per measured subject
    flush_cache: bool = True             # flush the GPU's L2 before each timed call
    flush_cpu_cache: bool = False        # also flush the CPU's last-level cache (slow where the LLC is large)
    launch_overhead_us: float = 20.0     # warn when a baseline call is shorter than this on a GPU
    baselines: tuple[str, ...] = ("eager", "compile")
    # 1: the node's cached measurement of the baselines picks the faster one; 2 or more: both are measured again
    # first, in fresh processes (export --remeasure). Either way the faster one is timed again, paired with the
    # candidate in alternating blocks, and the speedup is the median of the blocks' ratios.
    rounds: int = 1
    # pairs of fresh processes (candidate and baselines) the paired blocks are spread over, each pair with its
    # share of the time cap; above 1, the interval also holds each pair's median, so that it covers what changes
    # from one process to the next (kswarm bench and export --remeasure use 3; a campaign's evaluations 1)
    processes: int = 1
    min_blocks: int = 6                  # paired blocks at least (fewer give no 95% interval of their median)
    max_blocks: int = 200
    # on CUDA, Nsight Compute's counters per kernel for an accepted candidate (evaluators/ncu.py): a fresh child,
    # a rebuild and ncu's replay passes inside the timing slot, so off unless asked for
    ncu: bool = False

    def flush_for(self, timer: str) -> bool:
        """Whether a timed call on a ``timer`` (cpu, cuda, mps) starts with the caches flushed."""
        return self.flush_cpu_cache if timer == "cpu" else self.flush_cache

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class EvalRequest:
    """One candidate, one problem, one device. ``mode`` is ``verify`` (correctness only) or ``bench`` (and timing)."""

    problem_path: str
    candidate_source: str
    device: str = "cpu"
    mode: Literal["verify", "bench"] = "bench"
    scale: str = "default"               # a key of the problem's SCALES, or "default"
    verify: VerifyPolicy = VerifyPolicy()
    timing: TimingPolicy = TimingPolicy()
    cache_dir: str | None = None         # build and baseline caches; None uses ~/.cache/kernelswarm

    @property
    def candidate_id(self) -> str:
        return candidate_hash(self.candidate_source)


def candidate_hash(source: str, params: dict[str, Any] | None = None) -> str:
    """Content hash of a candidate genome: its source and its parameters."""
    import json
    h = hashlib.sha256(source.encode())
    if params:
        h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()[:16]
