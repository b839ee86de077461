"""Each append adds one complete part and leaves every earlier part's bytes untouched."""
import hashlib
import re
from pathlib import Path

import pyarrow.parquet as pq
from popdata import row

from search.population import Population


def _digests(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()}


def test_each_append_writes_one_new_part_and_changes_no_other(tmp_path: Path) -> None:
    pop = Population.open(tmp_path, writer=True)
    parts = tmp_path / "population"
    seen: dict[str, str] = {}
    for i in range(5):
        pop.append([row(f"r{i}"), row(f"s{i}")])
        now = {k: v for k, v in _digests(parts).items() if k.endswith(".parquet")}
        assert len(now) == i + 1
        assert all(now[k] == v for k, v in seen.items())
        seen = now
    for name in seen:
        assert re.fullmatch(r"part-\d{8}-[0-9a-f]{32}\.parquet", name)
        assert pq.ParquetFile(parts / name).metadata.num_rows == 2
    assert sorted(seen) == sorted(seen, key=lambda n: int(n[5:13]))
    assert not [n for n in (p.name for p in parts.iterdir()) if n.endswith(".tmp")]


def test_an_append_of_only_known_evaluations_writes_nothing(tmp_path: Path) -> None:
    pop = Population.open(tmp_path, writer=True)
    pop.append([row("a")])
    assert pop.append([row("a")]) == 0
    assert len(list((tmp_path / "population").glob("*.parquet"))) == 1


def test_sequence_numbers_continue_after_reopening(tmp_path: Path) -> None:
    with Population.open(tmp_path, writer=True) as pop:
        pop.append([row("a")])
    with Population.open(tmp_path, writer=True) as pop:
        pop.append([row("b")])
        assert len(pop) == 2
    names = sorted(p.name for p in (tmp_path / "population").glob("*.parquet"))
    assert [n[5:13] for n in names] == ["00000000", "00000001"]


def test_compaction_merges_only_the_recent_small_parts(tmp_path: Path) -> None:
    from search.journal import ParquetJournal
    from search.schema import rows_to_table
    with ParquetJournal(tmp_path, writer=True) as j:
        big = j.append(rows_to_table([row(f"big{i}") for i in range(5)]))
        for i in range(3):
            j.append(rows_to_table([row(f"small{i}")]))
        assert j.compact(target_rows=5, min_parts=4) is None      # only 3 small parts so far
        merged = j.compact(target_rows=5, min_parts=3)
        assert sorted(p.name for p in j.parts()) == sorted([big.name, merged.name])
        assert pq.ParquetFile(merged).metadata.num_rows == 3
    assert len(Population.open(tmp_path)) == 8
