"""Population benchmark: append, read, compaction, query and checkpoint times at 10^4, 10^5 and 10^6 rows.

Rows are appended in batches of 1000, one part per batch, as a campaign driver would (10^6 rows make 1000 parts),
then the folder is read cold, compacted, and read again; queries run on the loaded population. Each size is
repeated (fresh directory each time); the table gives the median and the min-max spread.

    PYTHONPATH=. .venv/bin/python experiments/population_bench.py [--sizes 10000 100000 1000000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from search import views
from search.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from search.population import Population
from search.schema import SCHEMA

BATCH = 1000
PROBLEMS = 250
HARDWARE = ("cpu", "h100", "h200", "rtx6000-blackwell")
STATUSES = ("accepted", "mismatch", "compile_error", "timeout", "runtime_error", "suspect_speedup")
STATUS_P = (0.45, 0.2, 0.15, 0.1, 0.08, 0.02)
TEMPLATE = ("import torch\nimport torch.nn as nn\n\n\nclass ModelNew(nn.Module):\n"
            "    def __init__(self):\n        super().__init__()\n\n    def forward(self, x):\n"
            + "        x = torch.relu(x) * 1.0  # unrolled step\n" * 14 + "        return x\n# variant ")


def synthetic(n: int, seed: int = 0) -> list[pa.Table]:
    """``n`` rows of plausible population data, in batches of ``BATCH``; parents point to earlier candidates."""
    rng = np.random.default_rng(seed)
    ids = np.char.mod("%016x", rng.integers(0, 2**63, n, dtype=np.int64))
    problem = rng.integers(0, PROBLEMS, n)
    hw = rng.integers(0, len(HARDWARE), n)
    status = rng.choice(len(STATUSES), n, p=STATUS_P)
    accepted = status == 0
    speed = np.where(accepted | (status == 5), rng.lognormal(0.0, 0.5, n), np.nan)
    err = np.where(accepted, 10 ** rng.uniform(-9, -4, n), np.nan)
    # a parent: an earlier row of the same problem (the previous one seen for it), or none
    parent = np.full(n, -1)
    last = np.full(PROBLEMS, -1)
    for i in range(n):   # data generation only, not timed
        parent[i] = last[problem[i]]
        last[problem[i]] = i
    t0 = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)
    pid = np.array([f"problem_{p:03d}" for p in range(PROBLEMS)])[problem]
    hwn = np.array(HARDWARE)[hw]
    ms = rng.lognormal(0.0, 1.0, n)
    cols = {
        "campaign": pa.array(np.full(n, "bench")), "problem_id": pa.array(pid),
        "problem_path": pa.array(np.char.add(np.char.add("experiments/problems/level1/", pid), ".py")),
        "level": pa.array(np.full(n, "level1")), "scale": pa.array(np.full(n, "default")),
        "candidate_id": pa.array(ids),
        "parent_ids": pa.array([[ids[p]] if p >= 0 else [] for p in parent], pa.list_(pa.string())),
        "generation": pa.array(np.arange(n) // (20 * BATCH), pa.int32()),
        "island": pa.array(np.char.add(np.char.add(pid, "/"), hwn)), "proposer": pa.array(np.full(n, "rewrites")),
        "backend": pa.array(np.full(n, "torch")),
        "source": pc.binary_join_element_wise(pa.array(np.full(n, TEMPLATE)), pa.array(ids), "").cast(
            pa.large_string()),
        "params": pa.array(np.full(n, '{"tile": 64}')), "hardware": pa.array(hwn),
        "device": pa.array(np.full(n, "Bench Device")), "status": pa.array(np.array(STATUSES)[status]),
        "reason": pa.array(np.full(n, "synthetic")), "max_abs_err": pa.array(err, from_pandas=True),
        "max_rel_err": pa.array(err, from_pandas=True), "rel_fro_err": pa.array(err, from_pandas=True),
        "candidate_ms": pa.array(ms), "eager_ms": pa.array(ms * np.nan_to_num(speed, nan=1.0)),
        "compile_ms": pa.array(ms * 1.1), "speedup": pa.array(speed, from_pandas=True),
        "compile_seconds": pa.array(rng.uniform(0.1, 30.0, n)),
        "created_at": pa.array([t0 + dt.timedelta(seconds=int(s)) for s in range(n)],
                               pa.timestamp("us", tz="UTC")),
        "eval_key": pa.array(np.char.add(np.char.add(np.char.add(pid, "/"), ids), np.char.add("@", hwn))),
    }
    table = pa.table({f.name: cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in SCHEMA},
                     schema=SCHEMA)
    return [table.slice(s, BATCH) for s in range(0, n, BATCH)]


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def one_run(batches: list[pa.Table], root: Path) -> dict[str, float]:
    d = Path(tempfile.mkdtemp(dir=root))
    out: dict[str, float] = {}
    pop = Population.open(d, writer=True)
    per_append = [timed(lambda b=b: pop.append(b)) for b in batches]
    out["append_total_s"] = sum(per_append)
    out["append_median_ms"] = statistics.median(per_append) * 1e3
    out["append_max_ms"] = max(per_append) * 1e3
    out["read_all_parts_s"] = timed(lambda: Population.open(d))
    reader = Population.open(d)
    extra = batches[0].set_column(SCHEMA.get_field_index("eval_key"), "eval_key",
                                  pc.binary_join_element_wise(batches[0].column("eval_key"), "+new", ""))
    pop.append(extra)
    out["reader_refresh_one_part_ms"] = timed(reader.refresh) * 1e3
    out["compact_s"] = timed(lambda: pop.compact())
    out["read_all_compacted_s"] = timed(lambda: Population.open(d))
    t = pop.table
    problem, hw = "problem_007", "h100"
    deep = t.column("candidate_id")[t.num_rows - 1].as_py()
    keys = t.column("eval_key").slice(0, 1000).to_pylist()
    queries: dict[str, Callable[[], object]] = {
        "q_best_per_problem_hw_ms": pop.best,
        "q_best_per_problem_hw_full_recompute_ms": lambda: views.best(t),
        "q_top5_one_island_ms": lambda: pop.top(problem, hw, 5),
        "q_seen_1000_eval_keys_ms": lambda: [k in pop for k in keys],
        "q_seen_candidate_ids_one_problem_ms": lambda: pop.seen_candidate_ids(problem),
        "q_seen_candidate_ids_all_ms": lambda: views.seen_candidate_ids(t),
        "q_status_counts_ms": pop.status_counts,
        "q_status_counts_full_recompute_ms": lambda: views.status_counts(t),
        "q_recent_failures_one_island_ms": lambda: pop.recent_failures(20, problem_id=problem, hardware=hw),
        "q_recent_failures_all_ms": lambda: pop.recent_failures(20),
        "q_lineage_ms": lambda: pop.lineage(deep),
        "q_pareto_front_one_island_ms": lambda: pop.front(problem, hw),
        "q_candidate_ranks_one_problem_ms": lambda: pop.candidate_ranks(problem),
    }
    for name, q in queries.items():
        out[name] = min(timed(q) for _ in range(3)) * 1e3   # warm: best of three
    rng = np.random.default_rng(0)
    ck = Checkpoint(generations={f"problem_{p:03d}/{h}": 7 for p in range(PROBLEMS) for h in HARDWARE},
                    proposer_states={"optuna": {"trials": rng.random((2000, 8)).tolist()},
                                     "rewrites": {"tried": keys}},
                    in_flight={k: {"source": TEMPLATE, "params": {"tile": 64}} for k in keys[:256]},
                    elapsed_s=1.0)
    out["checkpoint_save_ms"] = timed(lambda: save_checkpoint(d, ck)) * 1e3
    out["checkpoint_load_ms"] = timed(lambda: load_checkpoint(d)) * 1e3
    out["checkpoint_kb"] = (d / "checkpoint.json").stat().st_size / 1024
    out["population_table_mb"] = t.nbytes / 2**20
    out["parquet_mb"] = sum(p.stat().st_size for p in (d / "population").glob("*.parquet")) / 2**20
    out["load_avg_1min"] = os.getloadavg()[0]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pop.close()
    shutil.rmtree(d)
    return out


def machine() -> dict[str, str]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), "?")
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    mem = next((ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), "0")
    return {"cpu": model, "nproc": nproc, "memory_gib": f"{int(mem) / 2**20:.0f}",
            "python": platform.python_version(), "pyarrow": pa.__version__, "numpy": np.__version__,
            "platform": platform.platform()}


def render(results: dict[int, list[dict[str, float]]], info: dict[str, str], command: str) -> str:
    sizes = sorted(results)
    metrics = list(results[sizes[0]][0])
    lines = ["# Population benchmark", "", f"Date: {dt.date.today().isoformat()}", "", "Command:", "",
             f"    {command}", "", "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), "",
             f"Rows appended in batches of {BATCH} (one Parquet part per batch), {len(results[sizes[0]])} repeats "
             "per size in a fresh directory; each cell is the median, with min-max in brackets. Queries run warm "
             "on the loaded population (best of three calls). `read_all_parts_s`: a new reader loading every "
             "part; `read_all_compacted_s`: the same after `compact()`. `*_full_recompute_ms` and "
             "`*_all_ms` compute the view from the whole table; `Population.best()` and `status_counts()` are "
             "kept up to date per append (their cost is inside `append_*`); island queries use the population's "
             "per-island row index. `load_avg_1min`: the machine's load when the "
             "run ended (other work shared the machine).", "",
             "| metric | " + " | ".join(f"{n:,} rows" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for m in metrics:
        cells = []
        for n in sizes:
            v = [r[m] for r in results[n]]
            cells.append(f"{statistics.median(v):.3g} [{min(v):.3g}-{max(v):.3g}]")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("experiments/results/2026-11-28-population-bench.md"))
    ap.add_argument("--workdir", type=Path, default=None, help="where the populations are written (a temp dir)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(dir=args.workdir))
    results: dict[int, list[dict[str, float]]] = {}
    try:
        for n in args.sizes:
            batches = synthetic(n)
            results[n] = []
            for r in range(args.repeats):
                res = one_run(batches, root)
                results[n].append(res)
                logging.getLogger("bench").warning("%d rows, repeat %d: %s", n, r, json.dumps(
                    {k: round(v, 3) for k, v in res.items()}))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    command = "PYTHONPATH=. .venv/bin/python experiments/population_bench.py " + " ".join(
        ["--sizes", *map(str, args.sizes), "--repeats", str(args.repeats)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, machine(), command))


if __name__ == "__main__":
    main()
