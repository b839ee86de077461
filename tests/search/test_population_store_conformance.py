"""Both bundled stores meet the population store contract."""
from pathlib import Path

from population_conformance import StoreConformance

from search.journal import MemoryStore, ParquetJournal, PopulationStore


class TestParquetJournal(StoreConformance):
    def make_store(self, tmp_path: Path) -> PopulationStore:
        return ParquetJournal(tmp_path, writer=True)

    def reopen(self, store: PopulationStore) -> PopulationStore:
        return ParquetJournal(store.dir.parent)

    def compact(self, store: PopulationStore) -> None:
        store.compact(min_parts=1)


class TestMemoryStore(StoreConformance):
    def make_store(self, tmp_path: Path) -> PopulationStore:
        return MemoryStore()
