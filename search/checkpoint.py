"""The campaign checkpoint: the driver's state that the population journal does not hold, in one atomic JSON file.

Contract: the population journal is the source of truth for what has been evaluated. The checkpoint adds what a
resume needs besides: generation counters, proposer states, RNG state, budget already spent, and the evaluations
that were in flight. On resume, an in-flight evaluation whose ``eval_key`` is in the journal is done; every other
one is dispatched again (``to_dispatch_again``). So an evaluation is neither lost nor recorded twice, whichever of
"append to journal" and "write checkpoint" a crash interrupts.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import random
from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from search import atomic

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.json"
BACKUP_FILE = "checkpoint.backup.json"   # the same state, written second: one damaged copy leaves the other
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be written (state not JSON-able) or read (damaged, or from a newer format)."""


class NewerCheckpointError(CheckpointError):
    """A checkpoint written by a newer version of the tool: not damage, so no other copy is tried."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """``in_flight`` maps each dispatched, unfinished ``eval_key`` to what is needed to dispatch it again (e.g.
    ``Candidate.to_dict()`` plus its placement), or None. States are JSON-able; treat the mappings as read-only."""

    generations: Mapping[str, int] = dataclasses.field(default_factory=dict)      # island -> generation
    proposer_states: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # proposer name -> state
    in_flight: Mapping[str, Any] = dataclasses.field(default_factory=dict)        # eval_key -> payload
    rng_state: Any = None
    elapsed_s: float = 0.0       # campaign time so far, so that max_minutes spans resumes
    tokens: int = 0
    cost_usd: float = 0.0
    written_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **dataclasses.asdict(self)}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "Checkpoint":
        if d.get("format", FORMAT) > FORMAT:
            raise NewerCheckpointError(f"checkpoint format {d['format']} is newer than this tool's {FORMAT}; "
                                       "upgrade kernelswarm to resume this campaign")
        names = {f.name for f in dataclasses.fields(Checkpoint)}
        return Checkpoint(**{k: v for k, v in d.items() if k in names})


def _checksum(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()


def save_checkpoint(campaign_dir: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` atomically (temporary file, fsync, ``os.replace``), with a checksum of its content,
    then the same again as ``BACKUP_FILE``; returns the path of the first."""
    path = Path(campaign_dir) / CHECKPOINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    stamped = dataclasses.replace(checkpoint, written_at=dt.datetime.now(dt.timezone.utc).isoformat())
    try:
        body = json.loads(json.dumps(stamped.to_dict(), allow_nan=True))   # as a reader will see it
        text = json.dumps({**body, "checksum": _checksum(body)}, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint state is not JSON-able: {e}; proposers' get_state() must return "
                              "JSON values") from None
    for name in (CHECKPOINT_FILE, BACKUP_FILE):
        for stale in path.parent.glob(f".{name}.*.tmp"):   # left by a driver killed mid-write
            stale.unlink(missing_ok=True)
    # the main file first: a crash between the two writes leaves it newer than the backup, never older
    atomic.write_text(path, text + "\n")
    # the backup is replaced atomically but not fsynced (the main file is): it guards against later damage to the
    # main file, and its checksum catches a backup that a power cut left incomplete
    backup = path.with_name(BACKUP_FILE)
    tmp = atomic.temp_name(backup)
    tmp.write_text(text + "\n")
    os.replace(tmp, backup)
    return path


def _read(path: Path) -> Checkpoint:
    """One checkpoint file, verified; CheckpointError says what is wrong with it."""
    try:
        d = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:   # unreadable, not UTF-8, not JSON (truncated, overwritten)
        raise CheckpointError(f"{path.name} cannot be read ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(d, dict):
        raise CheckpointError(f"{path.name} holds {type(d).__name__}, not a checkpoint")
    expected = d.pop("checksum", None)
    if expected is not None and expected != _checksum(d):
        raise CheckpointError(f"{path.name} does not match its checksum (its content was changed or damaged)")
    try:
        return Checkpoint.from_dict(d)
    except CheckpointError:
        raise
    except (TypeError, ValueError) as e:   # a field of the wrong kind: e.g. "format" that is not a number
        raise CheckpointError(f"{path.name} is not a checkpoint ({type(e).__name__}: {str(e)[:120]})") from None


def load_checkpoint(campaign_dir: str | Path) -> Checkpoint | None:
    """The last checkpoint written, or None when the campaign has none yet. A damaged or missing checkpoint file
    is reported (logged as an error) and its backup copy used; CheckpointError when no copy can be used."""
    directory = Path(campaign_dir)
    present = [p for p in (directory / CHECKPOINT_FILE, directory / BACKUP_FILE) if p.exists()]
    if not present:
        return None
    problems = [] if present[0].name == CHECKPOINT_FILE else [f"{CHECKPOINT_FILE} is missing"]
    for path in present:
        try:
            checkpoint = _read(path)
        except NewerCheckpointError:
            raise
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if problems:
            log.error("%s: damaged checkpoint (%s); resuming from %s, written at %s, the last good copy",
                      directory, "; ".join(problems), path.name, checkpoint.written_at or "an unknown time")
        return checkpoint
    raise CheckpointError(f"{directory}: damaged checkpoint, no usable copy ({'; '.join(problems)}); the population "
                          f"is intact: move {' and '.join(p.name for p in present)} away to resume from the journal "
                          "alone")


def to_dispatch_again(checkpoint: Checkpoint | None, evaluated: Container[str]) -> dict[str, Any]:
    """In-flight evaluations the journal does not hold; ``evaluated`` is e.g. a ``Population`` (``in`` on
    eval_keys)."""
    if checkpoint is None:
        return {}
    return {k: v for k, v in checkpoint.in_flight.items() if k not in evaluated}


def rng_state(rng: random.Random | np.random.Generator) -> dict[str, Any]:
    """A JSON-able state of a ``random.Random`` or a numpy ``Generator``."""
    if isinstance(rng, random.Random):
        version, internal, gauss = rng.getstate()
        return {"kind": "random", "state": [version, list(internal), gauss]}
    if isinstance(rng, np.random.Generator):
        return {"kind": "numpy", "state": rng.bit_generator.state}
    raise TypeError(f"unsupported RNG {type(rng).__name__}; use random.Random or numpy.random.Generator")


def restore_rng(state: Mapping[str, Any]) -> random.Random | np.random.Generator:
    """A new RNG that continues exactly where the one ``rng_state`` saw stopped."""
    if state["kind"] == "random":
        version, internal, gauss = state["state"]
        rng = random.Random()
        rng.setstate((version, tuple(internal), gauss))
        return rng
    if state["kind"] == "numpy":
        bitgen = getattr(np.random, state["state"]["bit_generator"])()
        bitgen.state = state["state"]
        return np.random.Generator(bitgen)
    raise CheckpointError(f"unknown RNG kind {state['kind']!r}")
