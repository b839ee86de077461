"""The numbers behind a campaign report, as small Arrow tables computed from the population (no rendering here).

Speedups are over the faster of eager and torch.compile (the population's ``speedup``). A problem's best is its
best accepted candidate on a hardware class; ``suspect_speedup`` rows are not accepted and never count.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from search import pareto, views
from search.throughput import Throughput

NO_LEVEL = "other"


def islands(table: pa.Table) -> pa.Table:
    """Every (problem_id, hardware) evaluated at least once, with the problem's level."""
    t = table.select(["problem_id", "hardware", "level"])
    t = t.set_column(2, "level", pc.fill_null(t.column("level"), NO_LEVEL))
    return t.group_by(["problem_id", "hardware"]).aggregate([("level", "min")]).rename_columns(
        ["problem_id", "hardware", "level"])


def best_per_problem(table: pa.Table) -> pa.Table:
    """One row per (problem_id, hardware): the best accepted candidate's figures, nulls where none was accepted."""
    cols = ["problem_id", "hardware", "speedup", "speedup_ci_low", "speedup_ci_high", "max_abs_err",
            "max_rel_err", "candidate_ms", "eager_ms", "compile_ms", "candidate_id", "proposer"]
    best = views.best(table).select(cols)
    out = islands(table).join(best, keys=["problem_id", "hardware"], join_type="left outer")
    return out.sort_by([("level", "ascending"), ("problem_id", "ascending"), ("hardware", "ascending")])


def level_summary(b: pa.Table) -> pa.Table:
    """Per (level, hardware), from ``best_per_problem``'s table: problems, correct (any accepted), fast_1 (share of
    problems whose best accepted candidate is faster than 1.0), mean and geomean of the best speedup over correct
    problems, and the geomean of the deployed speedup (max(best, 1), i.e. 1 where the baseline stays)."""
    speed = b.column("speedup")
    correct = pc.is_valid(speed)
    deployed = pc.max_element_wise(pc.fill_null(speed, 1.0), 1.0)
    t = pa.table({
        "level": b.column("level"), "hardware": b.column("hardware"), "problem_id": b.column("problem_id"),
        "correct": pc.cast(correct, pa.int64()), "fast": pc.cast(pc.fill_null(pc.greater(speed, 1.0), False),
                                                                  pa.float64()),
        "speedup": speed, "log_speedup": pc.ln(speed), "log_deployed": pc.ln(deployed),
    })
    g = t.group_by(["level", "hardware"]).aggregate([
        ("problem_id", "count"), ("correct", "sum"), ("fast", "mean"), ("speedup", "mean"),
        ("log_speedup", "mean"), ("log_deployed", "mean")])
    return pa.table({
        "level": g.column("level"), "hardware": g.column("hardware"), "problems": g.column("problem_id_count"),
        "correct": g.column("correct_sum"), "fast_1": g.column("fast_mean"),
        "mean_speedup": g.column("speedup_mean"), "geomean_speedup": pc.exp(g.column("log_speedup_mean")),
        "geomean_deployed": pc.exp(g.column("log_deployed_mean")),
    }).sort_by([("level", "ascending"), ("hardware", "ascending")])


def best_so_far(table: pa.Table) -> pa.Table:
    """Per hardware class and evaluation (in time order, counted over all classes): the geomean over that class's
    problems of the deployed speedup found so far. Non-decreasing; starts at 1."""
    n = table.num_rows
    if n == 0:
        return pa.table({"evaluation": pa.array([], pa.int64()), "hardware": pa.array([], pa.string()),
                         "geomean_best": pa.array([], pa.float64())})
    t = table.select(["problem_id", "hardware", "status", "speedup", "created_at"])
    t = t.take(pc.sort_indices(t, sort_keys=[("created_at", "ascending")]))
    gain = np.log(np.maximum(pc.fill_null(pc.if_else(views.accepted_mask(t), t.column("speedup"), 1.0), 1.0)
                             .to_numpy(zero_copy_only=False), 1.0))
    gid = views.group_ids(t, ["problem_id", "hardware"])
    # running max of gain within each (problem, hardware), then how much each evaluation raised it
    by_group = np.lexsort((np.arange(n), gid))
    offset = (gain.max() + 1.0) * gid[by_group]
    run = np.maximum.accumulate(gain[by_group] + offset) - offset
    first = np.r_[True, gid[by_group][1:] != gid[by_group][:-1]]
    raised = np.empty(n)
    raised[by_group] = np.where(first, run, run - np.r_[0.0, run[:-1]])
    hw = t.column("hardware")
    parts = []
    for h in pc.unique(hw).to_pylist():
        mask = pc.equal(hw, h).to_numpy(zero_copy_only=False)
        problems = len(pc.unique(t.filter(pa.array(mask)).column("problem_id")))
        curve = np.exp(np.cumsum(np.where(mask, raised, 0.0)) / problems)
        parts.append(pa.table({"evaluation": np.arange(1, n + 1), "hardware": pa.array([h] * n),
                               "geomean_best": curve}))
    return pa.concat_tables(parts)


def failures_by_status(table: pa.Table) -> pa.Table:
    """Counts of every non-accepted status per hardware class."""
    rejected = table.filter(pc.not_equal(table.column("status"), views.ACCEPTED))
    return views.counts(rejected, ("status", "hardware"))


def pareto_points(table: pa.Table, problem_id: str) -> pa.Table:
    """Accepted rows of one problem: hardware, speedup, error and whether the row is on its class's front."""
    acc = views.accepted(views.select(table, problem_id=problem_id))
    parts = []
    for hw in sorted(set(acc.column("hardware").to_pylist())):
        r = pareto.ranked(acc, problem_id, hw)
        parts.append(pa.table({"hardware": r.column("hardware"), "speedup": r.column("speedup"),
                               "error": pa.array(pareto.error_of(r)),
                               "on_front": pc.equal(r.column("pareto_rank"), 0)}))
    return pa.concat_tables(parts) if parts else pa.table(
        {"hardware": pa.array([], pa.string()), "speedup": pa.array([], pa.float64()),
         "error": pa.array([], pa.float64()), "on_front": pa.array([], pa.bool_())})


def throughput(table: pa.Table, wall_s: float | None) -> tuple[dict, pa.Table, pa.Table]:
    """The campaign's throughput summary (see ``search.throughput``), its devices and its stages as tables.
    ``wall_s`` is the campaign's elapsed time; None takes the span from the first start to the last end."""
    tp = Throughput.from_table(table)
    if wall_s is None:
        spans = [s for spans in tp.spans.values() for s in spans]
        wall_s = (max(s.end for s in spans) - min(s.start for s in spans)) if spans else 0.0
    summary = tp.summary(wall_s)
    devices = summary["devices"]
    dev = pa.table({"device": list(devices), "hardware": [d["hardware"] for d in devices.values()],
                    "evaluations": [d["evaluations"] for d in devices.values()],
                    "busy_s": [d["busy_s"] for d in devices.values()],
                    "busy_fraction": [d["busy_fraction"] for d in devices.values()],
                    "per_hour": [d["evaluations_per_hour"] for d in devices.values()]},
                   schema=pa.schema([("device", pa.string()), ("hardware", pa.string()), ("evaluations", pa.int64()),
                                     ("busy_s", pa.float64()), ("busy_fraction", pa.float64()),
                                     ("per_hour", pa.float64())]))
    stages = summary["stages"]
    st = pa.table({"stage": list(stages), "count": [v["count"] for v in stages.values()],
                   "total_s": [v["total_s"] for v in stages.values()], "mean_s": [v["mean_s"] for v in stages.values()]},
                  schema=pa.schema([("stage", pa.string()), ("count", pa.int64()), ("total_s", pa.float64()),
                                    ("mean_s", pa.float64())]))
    return summary, dev, st


def llm_ideas(table: pa.Table) -> pa.Table:
    """The candidates an LLM proposer wrote, one row each: problem, hardware, role, whether the idea came from a
    person's guidance (campaign file or ``kswarm guide``), the idea, status and speedup."""
    import json
    rows = []
    cols = ["problem_id", "hardware", "status", "speedup", "params", "proposer"]
    for r in table.select(cols).to_pylist():
        if not r["proposer"].startswith("llm"):
            continue
        try:
            llm = (json.loads(r["params"] or "{}") or {}).get("llm") or {}
        except (json.JSONDecodeError, AttributeError):
            llm = {}
        rows.append({"problem_id": r["problem_id"], "hardware": r["hardware"], "role": llm.get("role", ""),
                     "from_guidance": bool(llm.get("from_guidance", False)),
                     "idea": " ".join(str(llm.get("idea", "")).split())[:160], "status": r["status"],
                     "speedup": r["speedup"]})
    names = ["problem_id", "hardware", "role", "from_guidance", "idea", "status", "speedup"]
    return pa.Table.from_pylist(rows) if rows else pa.table({n: pa.array([], pa.string()) for n in names})


def llm_counts(table: pa.Table) -> dict[str, int]:
    """How many candidates came from an LLM proposer, and how many of those from guidance."""
    ideas = llm_ideas(table)
    guided = sum(1 for g in ideas.column("from_guidance").to_pylist() if g is True) if ideas.num_rows else 0
    return {"candidates": ideas.num_rows, "from_guidance": guided}
