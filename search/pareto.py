"""Pareto fronts over accepted candidates: speedup (per hardware class, maximised) against error (minimised).

The error of a row is ``rel_fro_err``, else ``max_rel_err``, else ``max_abs_err``; a missing error counts as the
worst. Ties between equal objective vectors go to the lower compile time, then the shorter source. Only rows whose
status is ``accepted`` take part: a ``suspect_speedup`` never enters a front.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from search import views

_BLOCK = 1024


def pareto_ranks(values: np.ndarray, maximize: Sequence[bool] | None = None) -> np.ndarray:
    """Non-dominated sorting of ``values`` (n points x m objectives): rank 0 is the front, rank 1 the front of
    the rest, and so on. ``maximize`` says per objective which way is better (default: all maximised); NaN is
    the worst value. Costs O(n^2 m) time and O(n^2) bits."""
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[:, None]
    n, m = v.shape
    sign = np.ones(m) if maximize is None else np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    v = np.nan_to_num(v * sign, nan=-np.inf)
    dominates = np.zeros((n, n), dtype=bool)   # [i, j]: i dominates j
    for s in range(0, n, _BLOCK):
        a = v[s:s + _BLOCK, None, :]
        dominates[s:s + _BLOCK] = (a >= v[None]).all(-1) & (a > v[None]).any(-1)
    dominated_by = dominates.sum(0)
    ranks = np.full(n, -1, dtype=np.int64)
    remaining = np.ones(n, dtype=bool)
    rank = 0
    while remaining.any():
        current = remaining & (dominated_by == 0)
        ranks[current] = rank
        remaining &= ~current
        dominated_by = dominated_by - dominates[current].sum(0)
        rank += 1
    return ranks


def error_of(table: pa.Table) -> np.ndarray:
    """The error objective per row (lower is better); inf where no error was recorded."""
    err = pc.coalesce(table.column("rel_fro_err"), table.column("max_rel_err"), table.column("max_abs_err"))
    return pc.fill_null(err, np.inf).to_numpy(zero_copy_only=False).astype(float)


def _tie_breaks(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    comp = pc.fill_null(table.column("compile_seconds"), np.inf).to_numpy(zero_copy_only=False)
    size = pc.utf8_length(table.column("source")).to_numpy(zero_copy_only=False)
    return comp.astype(float), size.astype(np.int64)


def ranked(table: pa.Table, problem_id: str, hardware: str) -> pa.Table:
    """The accepted rows of one (problem, hardware) island with a ``pareto_rank`` column, best first: by rank,
    then speedup, then the tie-breaks."""
    isl = views.accepted(views.select(table, problem_id=problem_id, hardware=hardware))
    speed = isl.column("speedup").to_numpy(zero_copy_only=False).astype(float)
    err = error_of(isl)
    ranks = pareto_ranks(np.c_[speed, err], maximize=(True, False))
    comp, size = _tie_breaks(isl)
    order = np.lexsort((size, comp, err, -speed, ranks))
    return isl.take(pa.array(order, pa.int64())).append_column("pareto_rank", pa.array(ranks[order]))


def front(table: pa.Table, problem_id: str, hardware: str) -> pa.Table:
    """The non-dominated accepted rows of one island, best speedup first. Of rows with equal speedup and error,
    only the tie-break winner is kept."""
    r = ranked(table, problem_id, hardware)
    r = r.filter(pc.equal(r.column("pareto_rank"), 0)).drop_columns(["pareto_rank"])
    if r.num_rows < 2:
        return r
    speed = r.column("speedup").to_numpy(zero_copy_only=False)
    err = error_of(r)
    # rows are sorted by (speedup desc, err asc, tie-breaks), so an exact tie follows its winner
    dup = np.r_[False, (speed[1:] == speed[:-1]) & (err[1:] == err[:-1])]
    return r.filter(pa.array(~dup))


def candidate_ranks(table: pa.Table, problem_id: str, hardwares: Sequence[str] | None = None) -> pa.Table:
    """One row per accepted candidate of a problem with its speedup on each hardware class
    (``speedup@<hw>``, null where it was not accepted there), its worst error, and its ``pareto_rank`` over
    (speedup on every class, error). A candidate not yet accepted on a class counts as worst there."""
    acc = views.accepted(views.select(table, problem_id=problem_id))
    hws = sorted(set(acc.column("hardware").to_pylist())) if hardwares is None else list(hardwares)
    acc = views.select(acc, hardware=hws)
    cand = pc.dictionary_encode(acc.column("candidate_id")).combine_chunks()
    ci = cand.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    hi = pc.index_in(acc.column("hardware"), value_set=pa.array(hws, pa.string())).to_numpy(
        zero_copy_only=False).astype(np.int64)
    n = len(cand.dictionary)
    speed = np.full((n, len(hws)), np.nan)
    speed[ci, hi] = acc.column("speedup").to_numpy(zero_copy_only=False)
    err = np.full(n, -np.inf)
    np.maximum.at(err, ci, error_of(acc))
    comp_rows, size_rows = _tie_breaks(acc)
    comp = np.full(n, np.inf)
    np.minimum.at(comp, ci, comp_rows)
    size = np.zeros(n, dtype=np.int64)
    size[ci] = size_rows
    ranks = pareto_ranks(np.c_[speed, err], maximize=[True] * len(hws) + [False])
    mean_speed = np.nan_to_num(speed, nan=0.0).mean(axis=1) if hws else np.zeros(n)
    order = np.lexsort((size, comp, err, -mean_speed, ranks))
    cols = {"candidate_id": cand.dictionary.take(pa.array(order, pa.int64()))}
    for j, hw in enumerate(hws):
        cols[f"speedup@{hw}"] = pa.array(speed[order, j], from_pandas=True)
    cols.update(error=pa.array(err[order]), compile_seconds=pa.array(comp[order]),
                source_len=pa.array(size[order]), pareto_rank=pa.array(ranks[order]))
    return pa.table(cols)
