"""Warm sandbox children: started ahead, so that their start-up (interpreter, torch import, device context) is off
an evaluation's critical path.

A spare is a fresh child that has run nothing. It serves exactly one subject and is never reused: a candidate's
child is ended with its evaluation, and a baseline's spare has never seen candidate code. Spares are started with
the same scrubbed environment, scratch folder and self-applied limits as any child (``Child.start``); the parent's
limits (wall clock, memory, processes) are armed when one is taken. Within an evaluation the pipeline starts the
spares it will need next while the candidate builds and is verified; ``retain(True)`` keeps spares between
evaluations, for a long-lived evaluator (otherwise they are ended when the evaluation returns, so that nothing
outlives it).
"""
from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

from evaluators.sandbox import Child, ChildFailed, SandboxLimits

log = logging.getLogger(__name__)
SPARE_IDLE_S = 3600.0      # a spare nobody takes within this is ended by its own watchdog


class SparePool:
    """Started children per (self-applied limits, cache folder, role), a few at most."""

    def __init__(self, per_role: int = 1) -> None:
        self.per_role = per_role
        self._lock = threading.Lock()
        self._settle = threading.Lock()
        self._spares: dict[tuple[Any, ...], list[Child]] = {}
        self._ready: set[int] = set()
        self._retain = False
        self.started = 0           # children started by this pool (a figure for benchmarks)
        self.served_warm = 0       # takes served by a spare that was already started

    @property
    def retaining(self) -> bool:
        return self._retain

    def retain(self, keep: bool = True) -> None:
        """Keep spares between evaluations (a long-lived evaluator), or end them when an evaluation returns."""
        self._retain = keep

    @staticmethod
    def _key(limits: SandboxLimits, cache_dir: Path, role: str) -> tuple[Any, ...]:
        return (limits.child_side(), str(Path(cache_dir).resolve()), role)

    def take(self, limits: SandboxLimits, cache_dir: Path, role: str) -> Child:
        """A started child for one subject, armed with ``limits``: a spare when one is alive, else a new one. The
        caller owns it and ends it (``with child:``)."""
        with self._lock:
            spares = self._spares.get(self._key(limits, cache_dir, role), [])
            while spares:
                child = spares.pop(0)
                self._ready.discard(id(child))
                if child.proc is not None and child.proc.poll() is None:
                    child.arm(limits)
                    self.served_warm += 1
                    return child
                child.__exit__(None, None, None)
        child = Child(limits, Path(cache_dir), label=role)
        child.start()
        self.started += 1
        return child

    def prepare(self, limits: SandboxLimits, cache_dir: Path, role: str, n: int | None = None) -> None:
        """Start spares for ``role`` until ``n`` (default ``per_role``) are waiting."""
        want = self.per_role if n is None else n
        idle = dataclasses.replace(limits, timeout_s=SPARE_IDLE_S, timeout_why="a spare waiting to be taken")
        with self._lock:
            spares = self._spares.setdefault(self._key(limits, cache_dir, role), [])
            while len(spares) < want:
                child = Child(idle, Path(cache_dir), label=role)
                child.start()
                self.started += 1
                spares.append(child)

    def settle(self) -> None:
        """Wait until every spare has finished starting, so that no start-up competes with a timed call."""
        with self._settle:
            with self._lock:
                waiting = [c for spares in self._spares.values() for c in spares if id(c) not in self._ready]
            for child in waiting:
                try:
                    child.request("ping")
                    self._ready.add(id(child))
                except ChildFailed as e:
                    log.warning("a spare sandbox child failed to start: %s", e.reason)
                    self._drop(child)

    def _drop(self, child: Child) -> None:
        with self._lock:
            for spares in self._spares.values():
                if child in spares:
                    spares.remove(child)
        child.__exit__(None, None, None)

    def evaluation_done(self) -> None:
        """An evaluation returned: without ``retain``, nothing it started outlives it."""
        if not self._retain:
            self.close()

    def close(self) -> None:
        with self._lock:
            spares = [c for s in self._spares.values() for c in s]
            self._spares.clear()
            self._ready.clear()
        for child in spares:
            child.__exit__(None, None, None)


POOL = SparePool()
atexit.register(POOL.close)
