"""Read-only views of a population table, as pure functions of a ``pa.Table`` of ``SCHEMA``.

They are vectorised (pyarrow.compute and numpy, never a Python loop over rows) so that they stay fast at 10^6
rows. Each returns a new table or a small value; none changes its input.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from evaluators.result import Status

ACCEPTED = Status.ACCEPTED.value
FAILURE_COLUMNS = ("problem_id", "hardware", "candidate_id", "proposer", "generation", "status", "reason",
                   "created_at")


def dedup(table: pa.Table) -> pa.Table:
    """The first row of each ``eval_key``, in the original order."""
    keys = table.column("eval_key")
    if table.num_rows == 0 or pc.count_distinct(keys).as_py() == table.num_rows:
        return table
    first = (pa.table({"k": keys, "i": pa.array(np.arange(table.num_rows))})
             .group_by("k", use_threads=False).aggregate([("i", "min")]).column("i_min"))
    return table.take(pa.array(np.sort(first.to_numpy())))


def select(table: pa.Table, *, problem_id: str | Sequence[str] | None = None,
           hardware: str | Sequence[str] | None = None,
           status: str | Sequence[str] | None = None) -> pa.Table:
    """Rows matching every given filter."""
    mask = None
    for col, want in (("problem_id", problem_id), ("hardware", hardware), ("status", status)):
        if want is None:
            continue
        m = (pc.equal(table.column(col), want) if isinstance(want, str)
             else pc.is_in(table.column(col), value_set=pa.array(list(want), pa.string())))
        mask = m if mask is None else pc.and_(mask, m)
    return table if mask is None else table.filter(mask)


def take(table: pa.Table, indices: np.ndarray) -> pa.Table:
    """``table.take(indices)`` batch by batch: Arrow's take on a many-chunked string column first concatenates
    the chunks (copying every source), which would make a query cost the population's size, not its answer's."""
    indices = np.asarray(indices, dtype=np.int64)
    order = np.argsort(indices, kind="stable")
    wanted = indices[order]
    parts, start = [], 0
    for batch in table.to_batches():
        lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
        if hi > lo:
            parts.append(batch.take(pa.array(wanted[lo:hi] - start)))
        start += batch.num_rows
    out = pa.Table.from_batches(parts, schema=table.schema) if parts else table.schema.empty_table()
    if len(order) and np.any(order[1:] < order[:-1]):
        out = out.combine_chunks().take(pa.array(np.argsort(order)))
    return out


def accepted_mask(table: pa.Table) -> pa.ChunkedArray:
    """True where a row is accepted and has a speedup."""
    return pc.and_(pc.equal(table.column("status"), ACCEPTED), pc.is_valid(table.column("speedup")))


def accepted(table: pa.Table) -> pa.Table:
    """Accepted rows that have a speedup. ``suspect_speedup`` is not accepted and never appears here."""
    return table.filter(accepted_mask(table))


def group_ids(table: pa.Table, by: Sequence[str]) -> np.ndarray:
    """A dense int64 id per distinct combination of the ``by`` columns."""
    gid = np.zeros(table.num_rows, dtype=np.int64)
    for col in by:
        enc = pc.dictionary_encode(table.column(col)).combine_chunks()
        gid = gid * (len(enc.dictionary) + 1) + enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return gid


def _numpy(col: pa.ChunkedArray, fill: float) -> np.ndarray:
    return pc.fill_null(col, fill).to_numpy(zero_copy_only=False)


def top(table: pa.Table, k: int = 1, *, by: Sequence[str] = ("problem_id", "hardware")) -> pa.Table:
    """The ``k`` accepted rows with the highest speedup per group of ``by``, best first within a group.

    Ties go to the lower compile time, then to the shorter source, then to the earlier row. The ranking runs on
    numpy arrays of a few columns; whole rows are gathered for the winners alone.
    """
    mask = accepted_mask(table).to_numpy(zero_copy_only=False)
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return table.schema.empty_table()
    gid = group_ids(table, by)[idx]
    speed = _numpy(table.column("speedup"), np.nan)[idx]
    comp = _numpy(table.column("compile_seconds"), np.inf)[idx]
    size = _numpy(pc.binary_length(table.column("source")), 0)[idx]
    order = np.lexsort((size, comp, -speed, gid))
    g = gid[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    picked = take(table, idx[order[rank < k]])
    return picked.sort_by([(c, "ascending") for c in by] + [("speedup", "descending")])


def best(table: pa.Table) -> pa.Table:
    """The best accepted row per (problem_id, hardware)."""
    return top(table, 1)


def lineage(table: pa.Table, candidate_id: str) -> pa.Table:
    """The rows of ``candidate_id`` and of all its ancestors in its problem, oldest generation first."""
    own = table.filter(pc.equal(table.column("candidate_id"), candidate_id))
    # ancestry stays within a problem (migration crosses hardware classes, not problems): search only there
    table = select(table, problem_id=pc.unique(own.column("problem_id")).to_pylist())
    ids = table.column("candidate_id")
    found: set[str] = set()
    frontier = {candidate_id}
    parts = []
    while frontier:   # one pass per generation of ancestry, not per row
        rows = table.filter(pc.is_in(ids, value_set=pa.array(sorted(frontier), pa.string())))
        parts.append(rows)
        found |= frontier
        parents = pc.unique(pc.list_flatten(rows.column("parent_ids"))).to_pylist()
        frontier = {p for p in parents if p is not None} - found
    out = pa.concat_tables(parts) if parts else table.schema.empty_table()
    return out.sort_by([("generation", "ascending"), ("created_at", "ascending")])


def recent_failures(table: pa.Table, k: int = 20, *, problem_id: str | None = None,
                    hardware: str | None = None, columns: Sequence[str] | None = FAILURE_COLUMNS) -> pa.Table:
    """The ``k`` most recent rejected or failed rows with their reasons, newest first."""
    t = table if columns is None else table.select(list(dict.fromkeys([*columns, "problem_id", "hardware",
                                                                          "status", "created_at"])))
    t = select(t, problem_id=problem_id, hardware=hardware)
    t = t.filter(pc.not_equal(t.column("status"), ACCEPTED))
    if columns is not None:
        t = t.select(list(columns))
    if t.num_rows > k:
        t = t.take(pc.select_k_unstable(t, k, sort_keys=[("created_at", "descending")]))
    return t.sort_by([("created_at", "descending")])


def status_counts(table: pa.Table) -> dict[str, int]:
    """Rows per status, most frequent first."""
    vc = pc.value_counts(table.column("status")).to_pylist()
    return dict(sorted(((d["values"], d["counts"]) for d in vc), key=lambda kv: (-kv[1], kv[0])))


def counts(table: pa.Table, by: Sequence[str] = ("hardware", "status")) -> pa.Table:
    """Row counts per group of ``by``, as a table with a ``count`` column."""
    return (table.group_by(list(by)).aggregate([([], "count_all")])
            .rename_columns([*by, "count"]).sort_by([(c, "ascending") for c in by]))


def seen_candidate_ids(table: pa.Table, *, problem_id: str | None = None) -> frozenset[str]:
    """Candidate ids already evaluated (on any hardware), for deduplication before dispatch."""
    t = select(table.select(["problem_id", "candidate_id"]), problem_id=problem_id)
    return frozenset(pc.unique(t.column("candidate_id")).to_pylist())


def candidate_dicts(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as ``proposers.base.Candidate.to_dict()``-shaped dicts (for ``Candidate.from_dict``)."""
    cols = ["candidate_id", "source", "params", "parent_ids", "proposer", "backend", "hardware", "problem_id"]
    out = table.select(cols).to_pylist()
    for d in out:
        d["id"] = d.pop("candidate_id")
        d["params"] = json.loads(d["params"]) if d["params"] else {}
    return out
