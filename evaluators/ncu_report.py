"""Reading Nsight Compute's report: the metrics asked for, the CSV parsed into launches in base units, the
launches summed per kernel name and per call, and each kernel placed on the roofline of the hardware class's machine
model. Pure functions, tested without a GPU; ``evaluators/ncu.py`` runs ncu and calls them."""
from __future__ import annotations

import csv
import dataclasses
import re
from typing import Any, Sequence

NCU_MAX_KERNELS = 200    # launches profiled at most (--launch-count); past it the per-call figures are partial
NCU_TOP = 8              # kernel rows kept, by time
TIME = "gpu__time_duration.sum"
DRAM_READ, DRAM_WRITE = "dram__bytes_read.sum", "dram__bytes_write.sum"
SM_PCT = "sm__throughput.avg.pct_of_peak_sustained_elapsed"
DRAM_PCT = "dram__throughput.avg.pct_of_peak_sustained_elapsed"
# FLOPs from the SASS thread-instruction counters, as Nsight Compute's own roofline counts them: an FMA is two
# FLOPs (a packed half-precision HFMA2 is counted by ncu as one instruction per thread, so half precision may be
# undercounted by up to half). Keys of the machine model's vector table.
SASS_FLOPS = {
    f"sm__sass_thread_inst_executed_op_{op}_pred_on.sum": (2.0 if op.endswith("fma") else 1.0, dtype)
    for prefix, dtype in (("f", "float32"), ("h", "float16"), ("d", "float64"))
    for op in (f"{prefix}add", f"{prefix}mul", f"{prefix}fma")
}
CORE_METRICS = (TIME, DRAM_READ, DRAM_WRITE, SM_PCT, DRAM_PCT, *SASS_FLOPS)
# Tensor-pipe operations by source precision, kept where the chip's metric list has them (their names differ
# between architectures). ncu counts a multiply-add as two operations, i.e. these are FLOPs; a source precision with
# per-destination counters is counted by those only, never also by its total. Keys of the tensor table.
TENSOR_SOURCES = {"fp16": "float16", "bf16": "bfloat16", "tf32": "tf32", "fp8": "float8", "int8": "int8",
                  "fp64": "float64", "fp4": "float4"}
TENSOR_CANDIDATES = tuple(
    f"sm__ops_path_tensor_src_{src}{dst}.sum" for src in TENSOR_SOURCES
    for dst in ("", "_dst_fp16", "_dst_fp32", "_dst_fp64", "_dst_int32"))
_TENSOR_RE = re.compile(r"^sm__ops_path_tensor_src_([a-z0-9]+?)(?:_dst_[a-z0-9]+)?\.sum$")

def select_metrics(listing: str | None) -> tuple[str, ...]:
    """The metrics to collect: the core set (time, DRAM bytes, throughputs, SASS float instructions, present on
    every chip ncu supports) and the tensor-pipe counters, each kept where ``listing`` (``ncu --query-metrics``'s
    output, base names) names it. Without a listing, the core set alone: an unknown metric name makes ncu refuse
    the whole run."""
    def listed(metric: str) -> bool:
        return bool(re.search(r"(?<![\w.])" + re.escape(metric.split(".")[0]) + r"(?![\w])", listing or ""))

    if not listing or not listed(TIME):     # no listing, or one in a form not understood here
        return CORE_METRICS
    core = tuple(m for m in CORE_METRICS if listed(m))
    have = [m for m in TENSOR_CANDIDATES if listed(m)]
    by_source: dict[str, list[str]] = {}
    for m in have:
        by_source.setdefault(_TENSOR_RE.match(m).group(1), []).append(m)
    tensor = []
    for src, names in by_source.items():
        per_destination = [n for n in names if "_dst_" in n]
        tensor += per_destination or names
    return core + tuple(tensor)


_TIME_UNITS = {"nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0,
               "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
_PREFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
             "Ki": 1024.0, "Mi": 1024.0 ** 2, "Gi": 1024.0 ** 3, "Ti": 1024.0 ** 4}
_SCALED = re.compile(r"^(Ki|Mi|Gi|Ti|K|M|G|T|P)?(byte|inst|op|flop|cycle|sector|request|warp|thread)$")


def to_base(value: str, unit: str) -> float | None:
    """A value as ncu prints it (thousands separated by commas) in base units: seconds, bytes, counts, percent."""
    text = value.strip().replace(",", "")
    try:
        number = float(text)
    except ValueError:
        return None
    unit = unit.strip()
    if unit in _TIME_UNITS:
        return number * _TIME_UNITS[unit]
    m = _SCALED.match(unit)
    return number * _PREFIXES[m.group(1) or ""] if m else number


@dataclasses.dataclass(frozen=True)
class Launch:
    """One profiled kernel launch: its name and its metrics in base units (time in seconds)."""
    name: str
    metrics: dict[str, float]


def parse_csv(text: str) -> list[Launch]:
    """ncu's ``--csv --page details`` report: a header row naming "ID", "Kernel Name", "Metric Name", "Metric Unit"
    and "Metric Value" among others, then one quoted row per launch and metric. Lines that are no CSV rows (ncu's
    ``==PROF==`` messages, a program's own output) are skipped. Launches in the order ncu profiled them."""
    rows = csv.reader(line for line in text.splitlines() if line.startswith('"'))
    col: dict[str, int] | None = None
    launches: dict[tuple[str, str], tuple[str, dict[str, float]]] = {}
    for row in rows:
        if "Kernel Name" in row and "Metric Name" in row and "Metric Value" in row:
            col = {name: i for i, name in enumerate(row)}
            continue
        if col is None or len(row) < len(col):
            continue
        value = to_base(row[col["Metric Value"]], row[col["Metric Unit"]] if "Metric Unit" in col else "")
        if value is None:
            continue
        key = (row[col["Process ID"]] if "Process ID" in col else "", row[col["ID"]] if "ID" in col else "")
        name, metrics = launches.setdefault(key, (row[col["Kernel Name"]], {}))
        metrics[row[col["Metric Name"]]] = value
    return [Launch(name, metrics) for name, metrics in launches.values()]


def ncu_messages(text: str) -> str:
    """ncu's own errors in ``text`` (``==ERROR==`` lines, else ``==WARNING==`` ones, and the shim's), one line."""
    lines = [line.strip() for line in text.splitlines()]
    found = [line.split("==ERROR==", 1)[1].strip() for line in lines if "==ERROR==" in line]
    found += [line for line in lines if line.startswith("kswarm-ncu:") and "host's network" not in line]
    if not found:
        found = [line.split("==WARNING==", 1)[1].strip() for line in lines if "==WARNING==" in line]
    return "; ".join(dict.fromkeys(f for f in found if f))[:400]


# the roofline of a kernel -----------------------------------------------------------------------------------------
def flops_by_dtype(metrics: dict[str, float]) -> dict[str, float]:
    """FLOPs of one launch by unit and precision: ``float32`` etc. on the vector units, ``tensor.bfloat16`` etc. on
    the tensor pipe."""
    out: dict[str, float] = {}
    for name, (factor, dtype) in SASS_FLOPS.items():
        if metrics.get(name):
            out[dtype] = out.get(dtype, 0.0) + factor * metrics[name]
    for name, value in metrics.items():
        m = _TENSOR_RE.match(name)
        if m and value and m.group(1) in TENSOR_SOURCES:
            key = "tensor." + TENSOR_SOURCES[m.group(1)]
            out[key] = out.get(key, 0.0) + value
    return out


def _peak_flops(spec, key: str) -> float:
    """FLOP/s of the unit a ``flops_by_dtype`` key names; a precision the model lacks takes the table's fastest rate,
    so that the floor stays a floor."""
    tensor = key.startswith("tensor.")
    dtype = key.split(".", 1)[1] if tensor else key
    table = (spec.tensor_tflops or spec.vector_tflops) if tensor else spec.vector_tflops
    rate = table.get(dtype) or max(table.values(), default=0.0)
    return rate * 1e12


def roofline_row(flops: dict[str, float], dram_bytes: float, seconds: float, spec) -> dict[str, Any]:
    """Arithmetic intensity, and on the machine model (``spec``; none: intensity alone) the compute floor (the
    FLOPs of each precision at its unit's peak; the slowest of those, since the units may run at once), the memory
    floor (the DRAM bytes at peak bandwidth), the larger of the two, and the fraction of it the time reaches."""
    total = sum(flops.values())
    out: dict[str, Any] = {"arithmetic_intensity": total / dram_bytes if dram_bytes else None}
    if spec is None or not seconds:
        return out
    compute = max((v / _peak_flops(spec, k) for k, v in flops.items() if v and _peak_flops(spec, k)), default=0.0)
    memory = spec.floor_seconds(0.0, dram_bytes)["memory_s"]
    floor = max(compute, memory)
    out.update({"compute_floor_ms": compute * 1e3, "memory_floor_ms": memory * 1e3, "floor_ms": floor * 1e3,
                "bound": "compute" if compute > memory else "memory", "fraction_of_floor": floor / seconds})
    return out


def summarise(launches: Sequence[Launch], calls: int, spec) -> dict[str, Any]:
    """Per-call rows, one per kernel name (the slowest ``NCU_TOP``), and the totals of every launch, each with its
    roofline on ``spec``."""
    calls = max(1, int(calls))
    groups: dict[str, dict[str, Any]] = {}
    for launch in launches:
        g = groups.setdefault(launch.name, {"n": 0, "s": 0.0, "bytes": 0.0, "flops": {}, "sm": [], "dram": []})
        m = launch.metrics
        g["n"] += 1
        g["s"] += m.get(TIME, 0.0)
        g["bytes"] += m.get(DRAM_READ, 0.0) + m.get(DRAM_WRITE, 0.0)
        for k, v in flops_by_dtype(m).items():
            g["flops"][k] = g["flops"].get(k, 0.0) + v
        for key, metric in (("sm", SM_PCT), ("dram", DRAM_PCT)):
            if metric in m:
                g[key].append(m[metric])

    def row(name: str, g: dict[str, Any]) -> dict[str, Any]:
        flops = {k: v / calls for k, v in g["flops"].items()}
        r = {"name": name[:120], "launches": g["n"] / calls, "duration_ms": g["s"] * 1e3 / calls,
             "dram_bytes": g["bytes"] / calls, "flops": sum(flops.values()), "flops_by_dtype": flops}
        for key, label in (("sm", "sm_throughput_pct"), ("dram", "dram_throughput_pct")):
            if g[key]:
                r[label] = sum(g[key]) / len(g[key])
        return {**r, **roofline_row(flops, r["dram_bytes"], g["s"] / calls, spec)}

    rows = sorted((row(n, g) for n, g in groups.items()), key=lambda r: -r["duration_ms"])
    everything = {"n": sum(g["n"] for g in groups.values()), "s": sum(g["s"] for g in groups.values()),
                  "bytes": sum(g["bytes"] for g in groups.values()), "flops": {}, "sm": [], "dram": []}
    for g in groups.values():
        for k, v in g["flops"].items():
            everything["flops"][k] = everything["flops"].get(k, 0.0) + v
    totals = row("all kernels", everything)
    totals.pop("name")
    totals.update({"kernels": len(groups), "profiled_launches": len(launches)})
    return {"rows": rows[:NCU_TOP], "totals": totals, "profiled_calls": calls,
            "truncated": len(launches) >= NCU_MAX_KERNELS, "machine": spec.name if spec is not None else None}


def against_problem(ncu: dict[str, Any], cost: dict[str, Any]) -> dict[str, Any]:
    """ncu's totals beside the problem's cost (``evaluators.profile.problem_cost``): the DRAM bytes over the fewest
    bytes a call must move, and the counted FLOPs over the reference's."""
    totals = dict(ncu.get("totals") or {})
    if cost.get("bytes") and totals.get("dram_bytes") is not None:
        totals["minimal_bytes"] = float(cost["bytes"])
        totals["dram_over_minimal"] = totals["dram_bytes"] / float(cost["bytes"])
    if cost.get("flops") and totals.get("flops") is not None:
        totals["problem_flops"] = float(cost["flops"])
        totals["flops_over_problem"] = totals["flops"] / float(cost["flops"])
    return {**ncu, "totals": totals}
