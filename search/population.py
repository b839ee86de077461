"""The population: every evaluation of a campaign, deduplicated, cached in memory, with read-only views.

``Population`` sits on a ``PopulationStore`` (the Parquet journal under ``DIR/population/`` by default). It keeps
an in-memory Arrow table that grows by the new parts only, so views cost a query, not a re-read of the folder.
"""
from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from search import pareto, views
from search.journal import MemoryStore, ParquetJournal, PopulationStore
from search.schema import (COLUMNS, SCHEMA, SCHEMA_VERSION, CandidateLike, Placement, SchemaError, conform,
                           empty_table, eval_key, level_of, row_from_result, rows_to_table)

__all__ = ["COLUMNS", "SCHEMA", "SCHEMA_VERSION", "CandidateLike", "MemoryStore", "ParquetJournal", "Placement",
           "Population", "PopulationStore", "SchemaError", "eval_key", "level_of", "read_population",
           "row_from_result", "rows_to_table"]

log = logging.getLogger(__name__)

CHUNK_ROWS = 1 << 17


class Population:
    """All evaluations of one campaign, each ``eval_key`` once (the first row written wins).

    The table it hands out is immutable; appends make a new one. Only the campaign driver appends (open it with
    ``writer=True``); any other process opens it read-only and calls ``refresh`` to pick up new parts.
    """

    def __init__(self, store: PopulationStore):
        self.store = store
        self._cursor: Hashable | None = None
        self._chunks: list[pa.Table] = []
        self._table: pa.Table | None = empty_table()
        self._keys: set[str] = set()
        self._version = 0
        self._memo: dict[str, Any] = {}
        # kept up to date per append: a new best can only come from the new rows (see _add)
        self._best = views.best(empty_table())
        self._status_counts: dict[str, int] = {}
        # row positions of each (problem_id, hardware) island in ``table``, so island queries skip the rest
        self._islands: dict[tuple[str, str], list[np.ndarray]] = {}
        self.refresh()

    @classmethod
    def open(cls, campaign_dir: str | Path, *, writer: bool = False) -> "Population":
        return cls(ParquetJournal(campaign_dir, writer=writer))

    def close(self) -> None:
        if isinstance(self.store, ParquetJournal):
            self.store.close()

    def __enter__(self) -> "Population":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------------------------

    def append(self, rows: Sequence[Mapping[str, Any]] | pa.Table) -> int:
        """Write the rows whose ``eval_key`` is new as one atomic unit; returns how many were written.

        A repeated ``eval_key`` is skipped with a warning: an evaluation is never recorded twice.
        """
        table = conform(rows if isinstance(rows, pa.Table) else rows_to_table(rows))
        fresh = self._only_new(table)
        if fresh.num_rows < table.num_rows:
            log.warning("skipped %d rows whose eval_key is already in the population",
                        table.num_rows - fresh.num_rows)
        if fresh.num_rows:
            self.store.append(fresh)
            self.refresh()
        return fresh.num_rows

    def compact(self, **kwargs: Any) -> None:
        """Merge the store's recent parts (see ``ParquetJournal.compact``). The rows do not change, so the cache
        is not reloaded: only this writer writes, and it is up to date before compacting."""
        self.refresh()
        self.store.compact(**kwargs)
        self._cursor = self.store.end()

    # -- reading -------------------------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Take in rows appended since the last refresh (by this or another process); returns how many."""
        tables, self._cursor = self.store.read_new(self._cursor)
        if not tables:
            return 0
        fresh = self._only_new(pa.concat_tables([conform(t) for t in tables]))
        if fresh.num_rows:
            self._add(fresh)
        return fresh.num_rows

    def _only_new(self, table: pa.Table) -> pa.Table:
        table = views.dedup(table)
        if self._keys and table.num_rows:
            known = [k in self._keys for k in table.column("eval_key").to_pylist()]
            if any(known):
                table = table.filter(pc.invert(pa.array(known)))
        return table

    def _add(self, table: pa.Table) -> None:
        self._index_islands(table, offset=len(self))
        self._keys.update(table.column("eval_key").to_pylist())
        # The ranking of rows is a fixed total order (ties: earlier row first), so the best of (old winners +
        # new rows) is the best of all rows.
        self._best = views.best(pa.concat_tables([self._best, table]))
        for status, n in views.status_counts(table).items():
            self._status_counts[status] = self._status_counts.get(status, 0) + n
        # A binary counter capped at CHUNK_ROWS: merge the last two chunks while the older is no larger and the
        # sum fits. Queries see few chunks (about n / CHUNK_ROWS + log n), each row is copied O(log CHUNK_ROWS)
        # times, and no append ever copies more than CHUNK_ROWS rows.
        for start in range(0, table.num_rows, CHUNK_ROWS):
            self._chunks.append(table.slice(start, CHUNK_ROWS).combine_chunks())
            while (len(self._chunks) > 1 and self._chunks[-2].num_rows <= self._chunks[-1].num_rows
                   and self._chunks[-2].num_rows + self._chunks[-1].num_rows <= CHUNK_ROWS):
                last = self._chunks.pop()
                self._chunks[-1] = pa.concat_tables([self._chunks[-1], last]).combine_chunks()
        self._table = None
        self._version += 1
        self._memo.clear()

    def _index_islands(self, table: pa.Table, offset: int) -> None:
        groups = (pa.table({"p": table.column("problem_id"), "h": table.column("hardware"),
                            "i": pa.array(np.arange(offset, offset + table.num_rows))})
                  .group_by(["p", "h"], use_threads=False).aggregate([("i", "list")]))
        for p, h, rows in zip(groups.column("p").to_pylist(), groups.column("h").to_pylist(),
                              groups.column("i_list").combine_chunks(), strict=True):
            self._islands.setdefault((p, h), []).append(np.sort(rows.values.to_numpy()))

    def _rows_of(self, key: tuple[str, str]) -> np.ndarray:
        parts = self._islands.get(key, [])
        if len(parts) > 1:
            parts[:] = [np.concatenate(parts)]
        return parts[0] if parts else np.empty(0, dtype=np.int64)

    def island(self, problem_id: str, hardware: str | None = None) -> pa.Table:
        """The rows of one problem on one hardware class (or on all, with ``hardware=None``), in written order.
        Costs the island's size, not the population's."""
        keys = [(problem_id, hardware)] if hardware is not None else [
            k for k in self._islands if k[0] == problem_id]
        rows = [self._rows_of(k) for k in keys]
        rows = np.sort(np.concatenate(rows)) if len(rows) > 1 else rows[0] if rows else np.empty(0, np.int64)
        return views.take(self.table, rows)

    def islands(self) -> list[tuple[str, str]]:
        """Every (problem_id, hardware) evaluated so far."""
        return sorted(self._islands)

    @property
    def table(self) -> pa.Table:
        """Every evaluation once, in the order written."""
        if self._table is None:
            self._table = pa.concat_tables(self._chunks) if self._chunks else empty_table()
        return self._table

    @property
    def version(self) -> int:
        """Grows whenever rows are added; lets callers cache what they derive from the table."""
        return self._version

    def __len__(self) -> int:
        return sum(t.num_rows for t in self._chunks)

    def __contains__(self, key: object) -> bool:
        """Whether an ``eval_key`` (see ``schema.eval_key``) has been evaluated."""
        return key in self._keys

    def evaluated(self, problem_id: str, candidate_id: str, hardware: str) -> bool:
        return eval_key(problem_id, candidate_id, hardware) in self._keys

    # -- views (all read-only; see search.views and search.pareto) -----------------------------------------------

    def _cached(self, name: str, fn: Any) -> Any:
        if name not in self._memo:
            self._memo[name] = fn()
        return self._memo[name]

    def best(self) -> pa.Table:
        """The best accepted row per (problem_id, hardware)."""
        return self._best

    def top(self, problem_id: str, hardware: str, k: int = 5) -> pa.Table:
        """The ``k`` best accepted rows of one island, best first."""
        return views.top(self.island(problem_id, hardware), k)

    def lineage(self, candidate_id: str) -> pa.Table:
        return views.lineage(self.table, candidate_id)

    def recent_failures(self, k: int = 20, *, problem_id: str | None = None,
                        hardware: str | None = None) -> pa.Table:
        if problem_id is not None:
            return views.recent_failures(self.island(problem_id, hardware), k)
        return views.recent_failures(self.table, k, hardware=hardware)

    def status_counts(self) -> dict[str, int]:
        return dict(sorted(self._status_counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def seen_candidate_ids(self, problem_id: str | None = None) -> frozenset[str]:
        """Candidate ids evaluated on any hardware class (of one problem, or of all, cached per version)."""
        if problem_id is not None:
            return views.seen_candidate_ids(self.island(problem_id))
        return self._cached("seen", lambda: views.seen_candidate_ids(self.table))

    def front(self, problem_id: str, hardware: str) -> pa.Table:
        """The Pareto front of one problem on one hardware class (accepted rows only)."""
        return pareto.front(self.island(problem_id, hardware), problem_id, hardware)

    def candidate_ranks(self, problem_id: str, hardwares: Sequence[str] | None = None) -> pa.Table:
        """Pareto ranks of a problem's candidates across hardware classes (see ``pareto.candidate_ranks``)."""
        return pareto.candidate_ranks(self.island(problem_id), problem_id, hardwares)


def read_population(campaign_dir: str | Path) -> pa.Table:
    """Every evaluation under ``campaign_dir``, once each, read without taking the writer lock."""
    return Population.open(campaign_dir).table
