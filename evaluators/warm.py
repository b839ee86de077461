"""Warm sandbox children: started ahead, so that their start-up (interpreter, torch import, device context) is off
an evaluation's critical path.

A spare is a fresh child that has run nothing. It serves exactly one subject and is never reused: a candidate's
child is ended with its evaluation, and a baseline's spare has never seen candidate code. Spares are started with
the same scrubbed environment, scratch folder and self-applied limits as any child (``Child.start``); the parent's
limits (wall clock, memory, processes) are armed when one is taken. Within an evaluation the pipeline starts the
spares it will need next while the candidate builds and is verified; ``retain(True)`` keeps spares between
evaluations, for a long-lived evaluator (otherwise they are ended when the evaluation returns, so that nothing
outlives it).

A retaining pool also keeps a few *built* baseline children (``built_baseline``): a child that has built the eager
or compiled reference of a problem and never saw candidate code may time that baseline again for the next candidate
of the same problem, which spares a start-up and a torch.compile per evaluation. Only the baseline's time is taken
from it (its outputs are never judged), so the weights it was built with do not matter.

The pool is per process, like a thread pool: ``POOL`` is the one the pipeline uses, ended at exit.
"""
from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

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
        self._built: collections.OrderedDict[tuple[Any, ...], Child] = collections.OrderedDict()
        self.max_built = 6         # built baseline children kept (a few problems in flight at once)
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

    @contextlib.contextmanager
    def built_baseline(self, limits: SandboxLimits, cache_dir: Path, key: tuple[Any, ...],
                       build: Callable[[Child], dict[str, Any] | None],
                       hold: Callable[[], Callable[[], None] | None] | None = None) -> Iterator[Child]:
        """A child with the baseline ``key`` built: a kept one when alive, else a fresh one that ``build`` builds.
        When the work with it succeeds and the pool retains, it is kept for the next evaluation (the oldest is
        ended past ``max_built``); otherwise it is ended. ``hold``, on a device whose memory evaluations share,
        reserves the kept child's memory while it waits (its release, or None when that memory is not to be had:
        the child is then ended), so that kept children are counted beside the evaluations' reservations."""
        full = (self._key(limits, cache_dir, "baseline"), *key)
        with self._lock:
            child = self._built.pop(full, None)
        if child is not None:
            _release(child)      # in use again: the evaluation's own reservation covers it now
        if child is not None and (child.proc is None or child.proc.poll() is not None or child.failed):
            child.__exit__(None, None, None)
            child = None
        if child is not None:
            child.arm(limits)
            self.served_warm += 1
            child.reused = True
        else:
            child = self.take(limits, cache_dir, "baseline")
            child.reused = False
        ok = False
        try:
            if not child.built:
                child.build_info = build(child) or {}
                child.built = True
            yield child
            ok = True
        finally:
            release = hold() if ok and self._retain and not child.failed and hold is not None else None
            if ok and self._retain and not child.failed and (hold is None or release is not None):
                child.kept_release = release
                child.arm(dataclasses.replace(child.limits, timeout_s=SPARE_IDLE_S,
                                              timeout_why="a built baseline waiting to be taken"))
                with self._lock:
                    # two evaluations of one problem at once each built a child: the one kept before is ended, not
                    # dropped from the table alive (its process and its memory reservation would outlive it)
                    replaced = self._built.pop(full, None)
                    self._built[full] = child
                    evicted = [self._built.popitem(last=False)[1] for _ in range(len(self._built) - self.max_built)]
                    evicted += [replaced] if replaced is not None else []
                for old in evicted:
                    _end(old)
            else:
                child.__exit__(None, None, None)

    def drop_built(self, enough: Callable[[], bool] | None = None) -> None:
        """End kept baseline children (their device memory is wanted), the longest kept first, until ``enough()``
        says so (None: all of them)."""
        while enough is None or not enough():
            with self._lock:
                if not self._built:
                    return
                child = self._built.popitem(last=False)[1]
            _end(child)

    def evaluation_done(self) -> None:
        """An evaluation returned: without ``retain``, nothing it started outlives it."""
        if not self._retain:
            self.close()

    def close(self) -> None:
        with self._lock:
            spares = [c for s in self._spares.values() for c in s] + list(self._built.values())
            self._spares.clear()
            self._built.clear()
            self._ready.clear()
        for child in spares:
            _end(child)


def _release(child: Child) -> None:
    """Give back the memory reservation a kept baseline child held while it waited, if any."""
    release = getattr(child, "kept_release", None)
    child.kept_release = None
    if release is not None:
        release()


def _end(child: Child) -> None:
    child.__exit__(None, None, None)
    _release(child)


POOL = SparePool()
atexit.register(POOL.close)
