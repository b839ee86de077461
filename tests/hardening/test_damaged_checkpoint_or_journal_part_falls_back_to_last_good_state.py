"""A checkpoint or population part that is truncated, overwritten or flipped is detected with a clear message, and
the last good state is used: the checkpoint's other copy, and every other part of the journal (the damaged part
set aside by the writer, so that other readers of the folder see the good parts too)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.checkpoint import (BACKUP_FILE, CHECKPOINT_FILE, Checkpoint, CheckpointError, load_checkpoint,
                               save_checkpoint)
from search.journal import ParquetJournal
from search.population import Population
from rows import row

STATE = Checkpoint(generations={"campaign": 7}, proposer_states={"optuna@cpu": {"pending": {"a": [["s", "cpu", 3]]}}},
                   in_flight={"p/abc@cpu": {"candidate": {"id": "abc"}}}, elapsed_s=12.5, tokens=3)


def same_state(a: Checkpoint, b: Checkpoint) -> bool:
    return {k: v for k, v in a.to_dict().items() if k != "written_at"} == \
        {k: v for k, v in b.to_dict().items() if k != "written_at"}


def damage(path: Path, how: str, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = min(len(data) - 1, int(len(data) * at))
    if how == "truncate":
        data = data[:i]
    elif how == "empty":
        data = bytearray()
    elif how == "flip":
        data[i] ^= 0x10
    elif how == "garbage":
        data = bytearray(b"\x00\xff" * 50)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "empty", "flip", "garbage"])
def test_a_damaged_checkpoint_is_reported_and_its_copy_used(tmp_path: Path, how: str, caplog) -> None:
    save_checkpoint(tmp_path, STATE)
    damage(tmp_path / CHECKPOINT_FILE, how)
    with caplog.at_level(logging.ERROR, logger="search.checkpoint"):
        got = load_checkpoint(tmp_path)
    assert same_state(got, STATE)
    assert any("damaged checkpoint" in r.getMessage() and BACKUP_FILE in r.getMessage() for r in caplog.records)


def test_a_missing_checkpoint_file_with_its_copy_left_is_reported(tmp_path: Path, caplog) -> None:
    save_checkpoint(tmp_path, STATE)
    (tmp_path / CHECKPOINT_FILE).unlink()
    with caplog.at_level(logging.ERROR, logger="search.checkpoint"):
        assert same_state(load_checkpoint(tmp_path), STATE)
    assert any("missing" in r.getMessage() for r in caplog.records)


def test_both_copies_damaged_is_one_clear_error(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, STATE)
    damage(tmp_path / CHECKPOINT_FILE, "truncate")
    damage(tmp_path / BACKUP_FILE, "flip")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    message = str(info.value)
    assert "damaged" in message and "journal alone" in message and "\n" not in message


def test_a_hand_edit_that_keeps_valid_json_is_caught_by_the_checksum(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, STATE)
    for name in (CHECKPOINT_FILE, BACKUP_FILE):
        d = json.loads((tmp_path / name).read_text())
        d["generations"]["campaign"] = 0
        (tmp_path / name).write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(tmp_path)


def test_a_checkpoint_from_before_checksums_still_loads(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).write_text(json.dumps(STATE.to_dict()))
    assert same_state(load_checkpoint(tmp_path), STATE)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=st.sampled_from(["truncate", "flip"]), at=st.floats(0.0, 1.0), which=st.sampled_from([0, 1]),
       other=st.sampled_from([None, "truncate", "flip"]), at2=st.floats(0.0, 1.0))
def test_fuzzed_damage_gives_the_saved_state_or_one_clear_error(tmp_path: Path, how, at, which, other, at2) -> None:
    save_checkpoint(tmp_path, STATE)
    files = [tmp_path / CHECKPOINT_FILE, tmp_path / BACKUP_FILE]
    damage(files[which], how, at)
    if other:
        damage(files[1 - which], other, at2)
    try:
        got = load_checkpoint(tmp_path)
    except CheckpointError as e:
        assert other is not None and "\n" not in str(e)
    else:
        assert same_state(got, STATE)


def journal_with_three_parts(campaign: Path) -> list[Path]:
    with Population.open(campaign, writer=True) as pop:
        for tag in ("a", "b", "c"):
            pop.append([row(f"{tag}{i}") for i in range(40)])
        return ParquetJournal(campaign).parts()


def middle_page(part: Path) -> float:
    """A position inside the data pages of the ``source`` column, as a fraction of the file."""
    meta = pq.ParquetFile(part).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    col = meta.row_group(0).column(names.index("source"))
    return (col.data_page_offset + col.total_compressed_size // 2) / part.stat().st_size


@pytest.mark.parametrize("how", ["truncate", "empty", "flip", "garbage"])
def test_a_damaged_part_is_set_aside_and_the_rest_is_read(tmp_path: Path, how: str, caplog) -> None:
    parts = journal_with_three_parts(tmp_path)
    damage(parts[1], how, middle_page(parts[1]))
    with caplog.at_level(logging.ERROR, logger="search.journal"):
        reader = Population.open(tmp_path)                # a reader reports it and leaves the folder as it is
        assert len(reader) == 80 and parts[1].exists()
        with Population.open(tmp_path, writer=True) as pop:   # the driver's resume sets it aside
            assert len(pop) == 80
            pop.append([row("d0")])
            assert len(pop) == 81
    assert not parts[1].exists() and (parts[1].parent / f".damaged-{parts[1].name}").exists()
    assert any("damaged population part" in r.getMessage() and parts[1].name in r.getMessage()
               for r in caplog.records)
    assert ds.dataset(tmp_path / "population", format="parquet").to_table().num_rows == 81   # other tools too
    assert len(Population.open(tmp_path)) == 81


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=st.sampled_from(["truncate", "flip"]), at=st.floats(0.0, 1.0))
def test_fuzzed_part_damage_leaves_the_other_parts_whole(tmp_path_factory, how: str, at: float) -> None:
    campaign = tmp_path_factory.mktemp("journal")
    parts = journal_with_three_parts(campaign)
    before = Population.open(campaign).table
    damage(parts[1], how, at)
    with Population.open(campaign, writer=True) as pop:
        keys = set(pop.table.column("eval_key").to_pylist())
    whole = set(before.column("eval_key").to_pylist())
    first_and_last = set(before.slice(0, 40).column("eval_key").to_pylist() +
                         before.slice(80, 40).column("eval_key").to_pylist())
    assert first_and_last <= keys <= whole
    assert len(keys) in (80, 120)          # the damaged part's rows are all there or all left out
