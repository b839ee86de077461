"""The proposer protocol: candidates, the read-only view of a problem, and the abstract proposer.

A ``Candidate`` is a frozen genome (source and parameters) whose id is its content hash. A ``Proposer`` turns a
``ProblemView`` into new candidates and may learn from evaluated ones through ``observe``. Its state is a JSON-able
dict that the campaign stores in its checkpoints and hands back through ``set_state`` on resume.
"""
from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from evaluators.hardware import device_kind  # noqa: F401  (the one rule; proposers import it from here)
from evaluators.policy import candidate_hash

if TYPE_CHECKING:
    from evaluators.result import EvalResult

BACKENDS = ("torch", "compile", "cpp", "triton", "cuda", "metal")


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenParams(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"candidate parameters must be JSON values, got {type(value).__name__}")


def _thaw(value: Any) -> Any:
    if isinstance(value, FrozenParams):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class FrozenParams(Mapping):
    """An immutable, hashable mapping of JSON values (nested mappings and lists are frozen too)."""

    __slots__ = ("_data", "_json")

    def __init__(self, data: Mapping[str, Any] | None = None):
        items = {}
        for k, v in (data or {}).items():
            if not isinstance(k, str):
                raise TypeError(f"candidate parameter names must be strings, got {k!r}")
            items[k] = _freeze(v)
        self._data = items
        self._json = json.dumps(_thaw(self), sort_keys=True)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(self._json)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenParams):
            return self._json == other._json
        if isinstance(other, Mapping):
            return self._json == FrozenParams(other)._json
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenParams({self._json})"

    def to_dict(self) -> dict[str, Any]:
        """A plain, mutable, JSON-serialisable copy."""
        return _thaw(self)

    def to_json(self) -> str:
        return self._json


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A proposed ``ModelNew`` source with its parameters. Its ``id`` is the content hash of source and params."""

    source: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=FrozenParams)
    parent_ids: tuple[str, ...] = ()
    proposer: str = ""
    backend: str = "torch"
    hardware: str = "cpu"
    problem_id: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.params, FrozenParams):
            object.__setattr__(self, "params", FrozenParams(self.params))
        object.__setattr__(self, "parent_ids", tuple(self.parent_ids))
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; valid: {', '.join(BACKENDS)}")

    @property
    def id(self) -> str:
        return candidate_hash(self.source, self.params.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "source": self.source, "params": self.params.to_dict(),
            "parent_ids": list(self.parent_ids), "proposer": self.proposer, "backend": self.backend,
            "hardware": self.hardware, "problem_id": self.problem_id,
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "Candidate":
        return Candidate(
            source=d["source"], params=d.get("params") or {}, parent_ids=tuple(d.get("parent_ids", ())),
            proposer=d.get("proposer", ""), backend=d.get("backend", "torch"),
            hardware=d.get("hardware", "cpu"), problem_id=d.get("problem_id", ""),
        )


@dataclasses.dataclass(frozen=True)
class Scored:
    """An accepted candidate and what it was worth on the view's hardware."""

    candidate: Candidate
    speedup: float | None
    candidate_ms: float | None = None
    profile: Mapping[str, Any] | None = None     # the evaluation's profile summary, where the view has it


@dataclasses.dataclass(frozen=True)
class Failure:
    """A rejected candidate and why (``status`` is an ``evaluators.result.Status`` value)."""

    candidate: Candidate
    status: str
    reason: str


@runtime_checkable
class ProblemView(Protocol):
    """What a proposer may see of one (problem, hardware class) pair. Read-only; the campaign implements it.

    ``cache_dir`` is where candidates may keep build artefacts (C++ extensions); ``cores`` is how many CPU cores an
    evaluation may use. ``best`` is ordered best first; ``failures`` most recent first.
    """

    @property
    def problem_id(self) -> str: ...

    @property
    def problem_path(self) -> str: ...

    @property
    def hardware(self) -> str: ...

    @property
    def cache_dir(self) -> str | None: ...

    @property
    def cores(self) -> int: ...

    def best(self, k: int = 5) -> Sequence[Scored]: ...

    def failures(self, k: int = 20) -> Sequence[Failure]: ...


@dataclasses.dataclass(frozen=True)
class StaticView:
    """A plain ``ProblemView`` for tests, the CLI and scripts: no history unless given."""

    problem_path: str
    hardware: str = "cpu"
    problem_id: str = ""
    cache_dir: str | None = None
    cores: int = 1
    accepted: tuple[Scored, ...] = ()
    rejected: tuple[Failure, ...] = ()

    def __post_init__(self) -> None:
        if not self.problem_id:
            import pathlib
            object.__setattr__(self, "problem_id", pathlib.Path(self.problem_path).stem)

    def best(self, k: int = 5) -> Sequence[Scored]:
        ranked = sorted(self.accepted, key=lambda s: -(s.speedup or 0.0))
        return ranked[:k]

    def failures(self, k: int = 20) -> Sequence[Failure]:
        return self.rejected[:k]


class Proposer(abc.ABC):
    """Where candidates come from.

    Contract: ``propose`` returns at most ``budget`` candidates for ``view.hardware`` and ``view.problem_id``, none of
    which it proposed before (the campaign also deduplicates by id). It never raises for a problem it cannot handle: it
    returns fewer candidates. ``observe`` gets each evaluated candidate with its result, in completion order, possibly
    from other workers. ``get_state`` returns JSON-able data; ``set_state`` on a fresh instance restores it.
    """

    name: str = "proposer"

    @abc.abstractmethod
    def propose(self, view: ProblemView, budget: int) -> list[Candidate]:
        """Up to ``budget`` new candidates for the view's problem and hardware."""

    def observe(self, results: Sequence[tuple[Candidate, "EvalResult"]]) -> None:
        """Learn from evaluated candidates. The default ignores them."""

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``get_state`` returned."""
