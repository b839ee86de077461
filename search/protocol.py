"""The joints of dispatch: what the campaign asks of a dispatcher, how an evaluate function is called with the
device's timing slot, what makes a device poisoned, and how a result carries the scheduler's account of its time.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from evaluators.result import EvalResult, Status

if TYPE_CHECKING:
    from search.scheduler import Timing


class NoDevice(RuntimeError):
    """A target hardware class with no device to run on; the message says what to do."""


class Dispatch(Protocol):
    """What the campaign needs of a dispatcher; ``search.local_dispatch`` and ``cluster.dispatch`` implement it."""

    def submit(self, key: str, request: Any, hardware: str, priority: int = 0) -> None: ...

    def poll(self, timeout: float | None = None) -> list[tuple[str, str, EvalResult]]: ...

    def withdraw(self) -> list[str]: ...

    def in_flight(self) -> set[str]: ...

    def capacity(self) -> dict[str, int]: ...

    def shutdown(self) -> None: ...


def poisoned(result: EvalResult) -> bool:
    """Whether the device context may be unusable after ``result``, so its worker must not be reused: the
    evaluator says so with the result's ``device_poisoned`` flag (``evaluators.pipeline`` sets it when its own
    device context fails a synchronisation after the evaluation)."""
    return bool(getattr(result, "device_poisoned", False))


class DeviceSlot:
    """One device's phases: work that may overlap on the device (build, verification) holds it shared; timing holds
    it alone, with nothing else on the device. Used as a context manager it is the exclusive (timing) hold, so an
    evaluator that only knows the timing slot still gets it; ``shared()`` is the hold for the overlapping phases.
    An exclusive request waits for the shared holders to leave and keeps new ones out meanwhile, so a stream of
    verifications cannot starve timing. Neither hold is re-entrant, and a shared holder must leave before it asks
    for the exclusive hold. ``shared_limit`` bounds the shared holders at once (the device's verify slots), so an
    evaluator may hold more evaluations than that, the rest building; None: no bound. ``building()`` is the hold
    for work that must stay off the device while it is timed but may overlap everything else (a CPU device's
    builds)."""

    def __init__(self, shared_limit: int | None = None) -> None:
        if shared_limit is not None and shared_limit < 1:
            raise ValueError(f"shared_limit must be at least 1, not {shared_limit}")
        self._cond = threading.Condition()
        self._limit = shared_limit
        self._shared = 0
        self._exclusive = False
        self._waiting = 0           # exclusive requests waiting
        self._reserved = 0          # device memory the evaluations under way reserved, bytes
        self._alone_waiting = 0     # reservations of the whole capacity waiting: they keep new ones out
        self._held: list[Reservation] = []   # reservations under way (kept children's ``try_reserve`` not among them)
        self._building = 0          # holders of ``building``: work that may overlap anything but timing

    @contextlib.contextmanager
    def reserve(self, nbytes: int, capacity: int, grow: int = 0):
        """Hold ``nbytes`` of the device's memory for the evaluation inside; waits while the reservations under way
        and this one would pass ``capacity``. One evaluation alone always goes ahead, however large (its own limits
        then decide), so nothing waits forever. Evaluations share a device's memory through this, so that one
        whose data alone is large does not run the others out of memory. A reservation of the whole ``capacity``
        (an evaluation that must have the device's memory to itself) keeps new reservations out while it waits, so a
        stream of smaller ones cannot starve it.

        ``grow``: bytes the evaluation adds later in one step (its baselines' children, for the timing), taken with
        ``Reservation.grow()`` and held until the end. A reservation is let in only where the reservations under way,
        this one and the largest growth still to come fit together, so every growth can be had once the evaluations
        that grew have ended, and growths never wait on each other for ever."""
        nbytes, grow = max(0, int(nbytes)), max(0, int(grow))
        alone = nbytes + grow >= capacity
        with self._cond:
            self._alone_waiting += alone
            try:
                self._cond.wait_for(lambda: (self._reserved == 0 or self._reserved + nbytes
                                             + max(grow, self._growth_to_come()) <= capacity)
                                    and (alone or not self._alone_waiting))
            finally:
                self._alone_waiting -= alone
            self._reserved += nbytes
            held = Reservation(self, nbytes, grow, capacity)
            self._held.append(held)
        try:
            yield held
        finally:
            with self._cond:
                self._reserved -= held.nbytes
                self._held.remove(held)
                self._cond.notify_all()

    def _growth_to_come(self) -> int:
        """The largest growth a reservation under way may still take, bytes (0 when none). Under ``_cond``."""
        return max((r.growth for r in self._held if not r.grown), default=0)

    def _grow_would_wait(self, held: "Reservation") -> bool:
        """Under ``_cond``: whether ``held``'s growth must wait (never for the only reservation under way)."""
        return len(self._held) > 1 and self._reserved + held.growth > held.capacity

    def try_reserve(self, nbytes: int, capacity: int) -> Callable[[], None] | None:
        """Hold ``nbytes`` now if they fit beside the reservations under way (and no reservation of the whole
        capacity is waiting), without waiting: the release, to be called once; None if they do not fit. For memory
        that outlives an evaluation (a kept baseline child). The growths still to come keep their room: a kept
        child never stands in the way of a reservation's ``grow()``."""
        nbytes = max(0, int(nbytes))
        with self._cond:
            if self._reserved + nbytes + self._growth_to_come() > capacity or self._alone_waiting:
                return None
            self._reserved += nbytes
        held = [True]

        def release() -> None:
            with self._cond:
                if held[0]:
                    held[0] = False
                    self._reserved -= nbytes
                    self._cond.notify_all()
        return release

    def would_wait(self, nbytes: int, capacity: int, grow: int = 0) -> bool:
        """Whether ``reserve(nbytes, capacity, grow)`` would wait now."""
        with self._cond:
            return (self._reserved > 0 and self._reserved + nbytes + max(grow, self._growth_to_come()) > capacity) or (
                nbytes + grow < capacity and self._alone_waiting > 0)

    @contextlib.contextmanager
    def shared(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and not self._waiting
                                and (self._limit is None or self._shared < self._limit))
            self._shared += 1
        try:
            yield self
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def building(self):
        """The hold for work that may overlap builds and verification but never timing: on a CPU device, whose
        cores both run the timed calls and build the next candidates, a build, a child's start-up or a reference
        run. Not bounded by the verify slots; it waits while timing holds the device or waits for it, and timing
        waits for it to be left. A holder must leave it before asking for a shared or the exclusive hold."""
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and not self._waiting)
            self._building += 1
        try:
            yield self
        finally:
            with self._cond:
                self._building -= 1
                self._cond.notify_all()

    def __enter__(self) -> "DeviceSlot":
        with self._cond:
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: not self._exclusive and not self._shared and not self._building)
            finally:
                self._waiting -= 1
            self._exclusive = True
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._cond:
            self._exclusive = False
            self._cond.notify_all()

    def holders(self) -> tuple[int, bool]:
        """(shared holders, whether it is held alone), for tests and the live view."""
        with self._cond:
            return self._shared, self._exclusive

    def builders(self) -> int:
        """Holders of ``building`` now, for tests and the live view."""
        with self._cond:
            return self._building


class Reservation:
    """An evaluation's hold on device memory (``DeviceSlot.reserve``): ``nbytes`` held now, ``growth`` more to
    take once with ``grow()``."""

    def __init__(self, slot: DeviceSlot, nbytes: int, growth: int, capacity: int) -> None:
        self.slot, self.nbytes, self.growth, self.capacity = slot, nbytes, growth, capacity
        self.grown = False

    def grow(self) -> None:
        """Take the growth declared when reserving; waits while it would not fit beside the reservations under way
        (never while this one is the only one). Once only; a second call does nothing."""
        slot = self.slot
        with slot._cond:
            if self.grown:
                return
            slot._cond.wait_for(lambda: not slot._grow_would_wait(self))
            slot._reserved += self.growth
            self.nbytes += self.growth
            self.grown = True
            slot._cond.notify_all()

    def would_wait(self) -> bool:
        """Whether ``grow()`` would wait now (False once grown)."""
        with self.slot._cond:
            return not self.grown and self.slot._grow_would_wait(self)


def accepts_timing_slot(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes the ``timing_slot`` keyword (the evaluator's contract for the exclusive timing phase)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "timing_slot" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def call_evaluate(fn: Callable[..., EvalResult], request: Any, timing_slot: Any, takes_slot: bool) -> EvalResult:
    """``fn(request)``, with the device's timing lock when ``fn`` takes one."""
    return fn(request, timing_slot=timing_slot) if takes_slot else fn(request)


def stamped(result: EvalResult, timing: "Timing", wall_offset: float) -> EvalResult:
    """``result`` with ``provenance["schedule"]``: the device and the times (Unix seconds) the scheduler saw.
    ``wall_offset`` turns the scheduler's clock into Unix time."""
    def wall(t: float | None) -> float | None:
        return None if t is None else round(t + wall_offset, 6)
    schedule = {"device_id": timing.device, "submitted_at": wall(timing.submitted_at),
                "started_at": wall(timing.started_at), "ended_at": wall(timing.ended_at),
                "precheck_s": round(timing.precheck_s, 6), "queue_s": round(timing.queue_s, 6),
                "attempts": timing.attempts}
    return dataclasses.replace(result, provenance={**result.provenance, "schedule": schedule})
