"""Profiles of accepted evaluations: where a candidate's time goes and where it stands on its roofline.

``profile_in_child`` asks the judged child, once its judged calls and audit are done and while the device is still
held alone, for a few more calls under ``torch.profiler`` (``child_profile`` is the child's side), so the profiler
is no part of what is judged and costs no second build. The summary (top kernels or ops by self device time, launches and bytes
allocated per call) joins the result's profile with the roofline of the hardware class's machine model
(``machine_specs``): arithmetic intensity, the compute and memory floors, and the fraction of the floor reached.
On CUDA, ``with_ncu`` adds Nsight Compute's hardware counters per kernel (``evaluators.ncu``), each kernel with
its own roofline, and ``with_profile`` sets their totals beside the problem's FLOPs and fewest bytes.
A profile informs the people and the LLM proposers; it never changes a verdict, and when it cannot be taken the
result keeps its verdict with ``profile_error`` (or ``ncu_error``) saying why.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

from evaluators.machine_specs import machine_spec

log = logging.getLogger(__name__)
PROFILE_CALLS = 5
TOP_OPS = 8


def child_profile(state: dict, msg: dict, *, torch, inp) -> dict[str, Any]:
    """In the child: the built model called ``calls`` times on fresh inputs under torch.profiler; per call figures.
    With ``range`` (a child started under ncu, whose counters clash with torch.profiler's), the calls alone, between
    cudaProfilerStart and cudaProfilerStop (``evaluators.ncu``)."""
    if msg.get("range"):
        from evaluators.ncu import child_calls_in_range
        return child_calls_in_range(state, msg, torch=torch, inp=inp)
    from torch.profiler import ProfilerActivity, profile

    model, device = state["model"], state["device"]
    kind = device.split(":")[0]
    inputs = inp.make_inputs(state["problem"], int(msg["seed"]), device)
    calls = max(1, int(msg.get("calls", PROFILE_CALLS)))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if kind == "cuda" else [])
    with torch.no_grad(), profile(activities=activities, profile_memory=True) as prof:
        for _ in range(calls):
            model(*inputs)
        if kind == "cuda":
            torch.cuda.synchronize()
    rows, launches, allocated = [], 0, 0
    for e in prof.key_averages():
        on_device = kind == "cuda" and str(getattr(e, "device_type", "")).endswith("CUDA")
        self_us = (getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)) \
            if on_device else (e.self_cpu_time_total if kind != "cuda" else 0)
        if on_device:
            launches += e.count
        elif kind != "cuda" and e.key.startswith("aten::") and e.self_cpu_time_total > 0:
            launches += e.count
        allocated += max(0, int(getattr(e, "self_device_memory_usage", 0) or 0) if kind == "cuda"
                         else int(getattr(e, "self_cpu_memory_usage", 0) or 0))
        if self_us > 0:
            rows.append({"name": e.key[:120], "self_device_ms": self_us / 1e3 / calls, "calls": e.count / calls})
    rows.sort(key=lambda r: -r["self_device_ms"])
    return {"top_ops": rows[:TOP_OPS], "launches": launches / calls, "allocated_bytes": allocated / calls,
            "device_ms": sum(r["self_device_ms"] for r in rows), "profiled_calls": calls,
            "profiler": "torch.profiler (" + ("CUDA kernels" if kind == "cuda" else "CPU ops") + ")"}


def roofline(profile: dict[str, Any], median_ms: float, *, cores: int = 1, device_name: str = "") -> dict[str, Any]:
    """Arithmetic intensity, the compute and memory floors on the class's machine model, and the fraction of the
    floor the measured time reaches; {} where the class has no model or the problem has no cost."""
    spec = machine_spec(str(profile.get("hardware", "")), cores=cores, device_name=device_name)
    # the FLOPs no rewrite can remove (``floor_flops``); FLOPs a rewrite may fold away bound nothing
    flops = float(profile.get("floor_flops", profile.get("flops")) or 0.0)
    nbytes = float(profile.get("bytes") or 0.0)
    if spec is None or not (flops or nbytes) or not median_ms:
        return {}
    dtype = str(profile.get("flops_dtype") or "float32")
    floors = spec.floor_seconds(flops, nbytes, dtype)
    floor_ms = floors["floor_s"] * 1e3
    return {"machine": spec.name, "arithmetic_intensity": flops / nbytes if nbytes else None,
            "ridge_flops_per_byte": spec.ridge_flops_per_byte(dtype),
            "compute_floor_ms": floors["compute_s"] * 1e3, "memory_floor_ms": floors["memory_s"] * 1e3,
            "floor_ms": floor_ms, "bound": "compute" if floors["compute_s"] > floors["memory_s"] else "memory",
            "fraction_of_floor": floor_ms / median_ms}


def profile_in_child(child, ref) -> dict[str, Any]:
    """The ``profile`` request to the judged child, after its judged calls and audit: the summary, or
    ``profile_error`` saying why there is none. The verdict is taken before this, and nothing here changes it."""
    from evaluators.judge import Rejected
    from evaluators.sandbox import ChildFailed

    try:
        kind, reply = child.request("profile", {"seed": ref.seed + 7, "calls": PROFILE_CALLS})
    except (Rejected, ChildFailed) as e:
        return {"profile_error": e.reason[:300]}
    except OSError as e:
        return {"profile_error": f"{type(e).__name__}: {e}"[:300]}
    if kind != "profile":
        return {"profile_error": str((reply or {}).get("message", kind))[:300]}
    return reply


def with_ncu(profiled: dict[str, Any], ref, candidate_source: str, limits, cache_dir, *,
             enabled: bool = True) -> dict[str, Any]:
    """``profiled`` (``profile_in_child``'s answer) with Nsight Compute's per-kernel counters and roofline added
    under ``ncu`` (``evaluators.ncu.ncu_profile``: the candidate built again in a fresh child under ncu, with the
    judged child's ``limits``), or ``ncu_error`` saying why there are none. Unchanged when ``enabled`` is off, the
    device is not CUDA, or ``profiled`` is empty (no profile was asked for: a verification). Call it with the
    device still held alone, after the judged child has ended."""
    if not enabled or not profiled or not str(ref.device).startswith("cuda"):
        return profiled
    from evaluators.ncu import ncu_profile
    return {**profiled, **ncu_profile(ref, candidate_source, limits, cache_dir)}


def with_profile(result, extra: dict[str, Any]) -> Any:
    """``result`` with the candidate's profile (``profile_in_child``'s answer) and roofline added to
    ``result.profile`` when it was accepted with a time; any other result is returned as it is."""
    if not result.status.accepted or result.candidate is None or not extra:
        return result
    if "profile_error" in extra:
        log.info("no profile for this candidate: %s", extra["profile_error"])
    if "ncu_error" in extra:
        log.info("no ncu counters for this candidate: %s", extra["ncu_error"])
    if extra.get("ncu"):
        from evaluators.ncu_report import against_problem
        extra = {**extra, "ncu": against_problem(extra["ncu"], result.profile)}
    line = roofline({**result.profile, **extra}, result.candidate.median_ms,
                    cores=int(result.provenance.get("threads") or 1), device_name=result.device_name)
    return dataclasses.replace(result, profile={**result.profile, **extra, "roofline": line})
