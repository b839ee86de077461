"""Conformance suite for population stores: subclass ``StoreConformance`` and define ``make_store``.

Every ``PopulationStore`` implementation's tests subclass it (as Optuna's storages share ``optuna.testing``), so
the contract in ``search.journal.PopulationStore``'s docstring is checked the same way for each.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from popdata import row

from search.journal import PopulationStore
from search.population import Population
from search.schema import SchemaError, rows_to_table


def _all_rows(store: PopulationStore) -> pa.Table:
    tables, _ = store.read_new(None)
    return pa.concat_tables(tables) if tables else rows_to_table([row("x")]).slice(0, 0)


def _keys(table: pa.Table) -> list[str]:
    return table.column("eval_key").to_pylist()


class StoreConformance:
    """The contract every population store meets."""

    def make_store(self, tmp_path: Path) -> PopulationStore:
        raise NotImplementedError

    def reopen(self, store: PopulationStore) -> PopulationStore:
        """Another reader of the same rows (a new process for a durable store)."""
        return store

    def compact(self, store: PopulationStore) -> None:
        store.compact()

    def test_reads_back_what_was_appended(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        store.append(rows_to_table([row("a"), row("b")]))
        assert _keys(_all_rows(self.reopen(store))) == [row("a")["eval_key"], row("b")["eval_key"]]

    def test_empty_append_adds_nothing(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        store.append(rows_to_table([row("a")]).slice(0, 0))
        assert _all_rows(store).num_rows == 0

    def test_read_new_returns_only_rows_after_the_cursor(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        store.append(rows_to_table([row("a")]))
        first, cursor = store.read_new(None)
        store.append(rows_to_table([row("b")]))
        store.append(rows_to_table([row("c")]))
        later, cursor = store.read_new(cursor)
        assert [k for t in later for k in _keys(t)] == [row("b")["eval_key"], row("c")["eval_key"]]
        assert store.read_new(cursor)[0] == []

    def test_end_cursor_skips_everything_stored(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        store.append(rows_to_table([row("a")]))
        cursor = store.end()
        store.append(rows_to_table([row("b")]))
        later, _ = store.read_new(cursor)
        assert [k for t in later for k in _keys(t)] == [row("b")["eval_key"]]

    def test_appended_rows_never_change(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        store.append(rows_to_table([row("a"), row("b", speedup=3.0)]))
        before = _all_rows(store)
        store.append(rows_to_table([row("c")]))
        after = _all_rows(self.reopen(store))
        assert after.slice(0, before.num_rows).equals(before)

    def test_append_refuses_unknown_columns(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        bad = rows_to_table([row("a")]).append_column("surprise", pa.array([1]))
        with pytest.raises(SchemaError):
            store.append(bad)

    def test_compaction_keeps_every_row(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        for tag in "abcde":
            store.append(rows_to_table([row(tag)]))
        _, old_cursor = store.read_new(None)
        self.compact(store)
        store.append(rows_to_table([row("f")]))
        assert sorted(set(_keys(_all_rows(self.reopen(store))))) == sorted(row(t)["eval_key"] for t in "abcdef")
        # a reader that had everything before the compaction gets at most repeats, and the new row
        later, _ = store.read_new(old_cursor)
        assert row("f")["eval_key"] in {k for t in later for k in _keys(t)}

    def test_population_over_the_store_holds_each_evaluation_once(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        pop = Population(store)
        assert pop.append([row("a"), row("b")]) == 2
        assert pop.append([row("b"), row("c")]) == 1
        self.compact(store)
        assert sorted(_keys(Population(self.reopen(store)).table)) == sorted(row(t)["eval_key"] for t in "abc")
