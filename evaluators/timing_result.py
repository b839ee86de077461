"""A verified candidate's timing as a result: the paired speedup, the baselines' times, warnings and the roofline."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from evaluators.baseline import BaselineRecord
from evaluators.judge import Reference
from evaluators.machines import hardware_class, machine_model
from evaluators.paired import PairedRun
from evaluators.policy import EvalRequest
from evaluators.profile import problem_cost
from evaluators.result import EvalResult, Status, TimeStats
from evaluators.stats import summarize


def with_timing(req: EvalRequest, ref: Reference, result: EvalResult, record: BaselineRecord, paired: PairedRun,
                bdir: Path) -> EvalResult:
    cand = summarize(paired.candidate.samples_ns)
    stats: dict[str, TimeStats] = {n: record.stats(n) for n in record.baselines}
    stats.update({n: summarize(s) for n, s in paired.baselines.items()})   # the paired ones as timed just now
    best = paired.faster
    sp, sp_ci = paired.speedup, paired.speedup_ci
    warnings: list[str] = []
    half = (sp_ci[1] - sp_ci[0]) / 2 / sp
    if half > req.timing.ci_target:
        warnings.append(f"the speedup's CI is +-{half:.1%} over {len(paired.ratios)} paired blocks, wider than the "
                        f"target {req.timing.ci_target:.0%}: the machine was not quiet or the time cap was reached")
    overhead_ms = req.timing.launch_overhead_us / 1000
    if req.device != "cpu" and stats[best].median_ms < overhead_ms:
        warnings.append(f"the faster baseline takes {stats[best].median_ms * 1000:.1f} us per call, so launch "
                        "overhead dominates; use a larger scale (--scale large) to tell kernels apart")
    hw = hardware_class(req.device, result.device_name)
    cost = problem_cost(ref, bdir)
    model = machine_model(hw)
    compute_s = model.floor_seconds(cost["floor_flops"], 0.0, cost["flops_dtype"])
    bytes_s = model.floor_seconds(0.0, cost["bytes"])
    floor_ms = max(compute_s, bytes_s) * 1e3
    bound = "compute" if compute_s > bytes_s else "memory"
    profile = {**cost, "hardware": hw, "floor_ms": floor_ms, "floor_bound": bound,
               "roofline_fraction": floor_ms / cand.median_ms if cand.median_ms > 0 else None,
               "faster_baseline": best}
    timing: dict[str, Any] = {**paired.describe(), "baseline_record": record.provenance()}
    out = dataclasses.replace(result, candidate=cand, eager=stats.get("eager"), compile=stats.get("compile"),
                              speedup=sp, speedup_ci=sp_ci, warnings=tuple(warnings), profile=profile, timing=timing,
                              reason=result.reason + f"; {sp:.2f}x over {best}")
    if floor_ms > cand.ci_high_ms:
        what = (f"{cost['floor_flops']:.3g} FLOPs at the {hw} peak" if bound == "compute"
                else f"{cost['bytes']:.3g} bytes at the {hw} bandwidth")
        return dataclasses.replace(out, status=Status.SUSPECT_SPEEDUP, reason=(
            f"measured {cand.median_ms:.4f} ms, below the roofline floor of {floor_ms:.4f} ms ({what}) on {hw}; "
            "held out of the Pareto front until a person approves it"))
    return out
