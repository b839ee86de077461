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
import json
import random
from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from search import atomic

CHECKPOINT_FILE = "checkpoint.json"
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be written (state not JSON-able) or read (damaged, or from a newer format)."""


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
            raise CheckpointError(f"checkpoint format {d['format']} is newer than this tool's {FORMAT}; "
                                  "upgrade kernelswarm to resume this campaign")
        names = {f.name for f in dataclasses.fields(Checkpoint)}
        return Checkpoint(**{k: v for k, v in d.items() if k in names})


def save_checkpoint(campaign_dir: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` atomically (temporary file, fsync, ``os.replace``); returns its path."""
    path = Path(campaign_dir) / CHECKPOINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    stamped = dataclasses.replace(checkpoint, written_at=dt.datetime.now(dt.timezone.utc).isoformat())
    try:
        text = json.dumps(stamped.to_dict(), sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint state is not JSON-able: {e}; proposers' get_state() must return "
                              "JSON values") from None
    for stale in path.parent.glob(f".{CHECKPOINT_FILE}.*.tmp"):   # left by a driver killed mid-write
        stale.unlink(missing_ok=True)
    atomic.write_text(path, text + "\n")
    return path


def load_checkpoint(campaign_dir: str | Path) -> Checkpoint | None:
    """The last checkpoint written, or None when the campaign has none yet."""
    path = Path(campaign_dir) / CHECKPOINT_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return Checkpoint.from_dict(json.loads(text))
    except (json.JSONDecodeError, TypeError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint ({e}); the population is intact, move the file "
                              "away to resume from the journal alone") from None


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
