"""A crash between a compaction's two steps leaves duplicate rows on disk; readers count each evaluation once."""
import shutil
import uuid
from pathlib import Path

import pyarrow.dataset as ds
from popdata import row

from search.journal import ParquetJournal
from search.population import Population, read_population




def test_duplicated_parts_are_counted_once(tmp_path: Path) -> None:
    with Population.open(tmp_path, writer=True) as pop:
        pop.append([row("a"), row("b")])
        pop.append([row("c")])
    parts = sorted((tmp_path / "population").glob("part-*.parquet"))
    # a merged copy of the first part, as a compaction writes it before removing the source
    shutil.copy(parts[0], parts[0].with_name(f"part-00000099-{uuid.uuid4().hex}.parquet"))
    assert ds.dataset(tmp_path / "population").count_rows() == 5
    table = read_population(tmp_path)
    assert table.num_rows == 3
    assert sorted(table.column("eval_key").to_pylist()) == sorted(row(t)["eval_key"] for t in "abc")


def test_compaction_then_reader_refresh_loses_and_doubles_nothing(tmp_path: Path) -> None:
    writer = Population.open(tmp_path, writer=True)
    reader = Population.open(tmp_path)
    for t in "abcd":
        writer.append([row(t)])
    reader.refresh()
    writer.compact(min_parts=1)
    writer.append([row("e")])
    reader.refresh()
    assert sorted(reader.table.column("eval_key").to_pylist()) == sorted(row(t)["eval_key"] for t in "abcde")
    assert len(list((tmp_path / "population").glob("part-*.parquet"))) == 2


def test_first_written_row_wins(tmp_path: Path) -> None:
    with Population.open(tmp_path, writer=True) as pop:
        pop.append([row("a", speedup=1.1)])
    # a second row for the same evaluation, written behind the Population's back
    with ParquetJournal(tmp_path, writer=True) as j:
        from search.schema import rows_to_table
        j.append(rows_to_table([row("a", speedup=9.0)]))
    assert read_population(tmp_path).column("speedup").to_pylist() == [1.1]
