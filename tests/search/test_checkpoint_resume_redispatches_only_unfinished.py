"""Checkpoints are atomic, round-trip the driver's state, and a resume re-dispatches exactly the unfinished work."""
import json
import random
from pathlib import Path

import numpy as np
import pytest
from popdata import row

from search.checkpoint import (BACKUP_FILE, CHECKPOINT_FILE, Checkpoint, CheckpointError, load_checkpoint,
                               restore_rng, rng_state, save_checkpoint, to_dispatch_again)
from search.population import Population


def test_absent_checkpoint_is_none(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path) is None
    assert to_dispatch_again(None, set()) == {}


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    rng = random.Random(7)
    ck = Checkpoint(generations={"add/cpu": 3}, proposer_states={"optuna": {"trials": [1, 2]}},
                    in_flight={"add/x@cpu": {"source": "s"}}, rng_state=rng_state(rng), elapsed_s=12.5,
                    tokens=100, cost_usd=0.25)
    save_checkpoint(tmp_path, ck)
    back = load_checkpoint(tmp_path)
    assert back is not None and back.written_at
    assert Checkpoint(**{**back.__dict__, "written_at": ""}) == ck


def test_rng_continues_where_it_stopped() -> None:
    def draw(r):
        return [r.random() for _ in range(5)]

    for rng in (random.Random(3), np.random.default_rng(3)):
        state = json.loads(json.dumps(rng_state(rng)))
        again = restore_rng(state)
        assert draw(again) == draw(rng)


def test_in_flight_work_already_in_the_journal_is_not_dispatched_again(tmp_path: Path) -> None:
    done, pending = row("done"), row("pending")
    with Population.open(tmp_path, writer=True) as pop:
        pop.append([done])   # the result landed, then the driver died before its next checkpoint
    save_checkpoint(tmp_path, Checkpoint(in_flight={done["eval_key"]: {"tag": "done"},
                                                    pending["eval_key"]: {"tag": "pending"}}))
    again = to_dispatch_again(load_checkpoint(tmp_path), Population.open(tmp_path))
    assert again == {pending["eval_key"]: {"tag": "pending"}}


def test_non_json_state_is_refused_and_the_old_checkpoint_kept(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, Checkpoint(generations={"a": 1}))
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path, Checkpoint(proposer_states={"p": object()}))
    assert load_checkpoint(tmp_path).generations == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT_FILE, BACKUP_FILE])


def test_damaged_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tmp_path)


def test_newer_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).write_text(json.dumps({"format": 99}))
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(tmp_path)
