"""Only one driver writes a population; readers never need the lock and cannot write."""
from pathlib import Path

import pytest
from popdata import row

from search.journal import JournalLockedError
from search.population import Population


def test_second_writer_is_refused_while_the_first_is_open(tmp_path: Path) -> None:
    first = Population.open(tmp_path, writer=True)
    with pytest.raises(JournalLockedError, match="another campaign driver"):
        Population.open(tmp_path, writer=True)
    first.close()
    Population.open(tmp_path, writer=True).close()


def test_reader_cannot_append(tmp_path: Path) -> None:
    Population.open(tmp_path, writer=True).close()
    with pytest.raises(PermissionError):
        Population.open(tmp_path).append([row("a")])


def test_reader_sees_writer_appends_after_refresh(tmp_path: Path) -> None:
    writer = Population.open(tmp_path, writer=True)
    reader = Population.open(tmp_path)
    writer.append([row("a")])
    assert len(reader) == 0
    assert reader.refresh() == 1 and row("a")["eval_key"] in reader
    assert reader.refresh() == 0


def test_reading_a_missing_campaign_dir_gives_an_empty_population(tmp_path: Path) -> None:
    assert len(Population.open(tmp_path / "nothing")) == 0
