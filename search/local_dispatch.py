"""The in-process adapter of the scheduler: evaluations run in threads of this process, no Ray.

Used by tests and by ``kswarm run --local``. Each device is a set of ``slots`` concurrent verify slots sharing one
timing slot (a lock handed to the evaluate function), and holds ``build_ahead`` evaluations more, building. A thread cannot be killed: an evaluation past its limit is
delivered as ``timeout`` and its device gets a fresh lock and fresh threads, the old thread's answer is ignored.
The real evaluator runs each candidate in its own sandboxed process with its own wall-clock limit, so such a thread
ends by itself.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from evaluators.result import EvalResult
from search.protocol import DeviceSlot, NoDevice, accepts_timing_slot, call_evaluate, stamped
from search.scheduler import Scheduler, Ticket

log = logging.getLogger(__name__)


class WorkerLost(Exception):
    """Raised by an in-process evaluate function when the worker under it died (its sandbox or device went away):
    the work is sent again, up to the retries, instead of being delivered as a crash."""


class LocalDispatcher:
    """``devices`` maps each target class to its number of local devices (at least one each, else ``NoDevice``)."""

    def __init__(self, devices: Mapping[str, int], evaluate: Callable[..., EvalResult],
                 precheck: Callable[[Any], EvalResult | None] | None = None, *, slots: int | Mapping[str, int] = 1,
                 build_ahead: int | Mapping[str, int] = 0,
                 timeout_s: float = 1800.0, retries: int = 2, precheck_workers: int = 1,
                 precheck_timeout_s: float | None = None):
        missing = [c for c, n in devices.items() if n < 1]
        if missing or not devices:
            raise NoDevice(f"no local device for hardware class {', '.join(missing) or '(none given)'}; "
                             "run on a Ray cluster that has one (drop --local) or drop the target")
        self.targets = list(devices)
        self._devices = dict(devices)
        self._evaluate, self._precheck = evaluate, precheck
        self._takes_slot = accepts_timing_slot(evaluate)
        self._sched = Scheduler(self.targets, timeout_s=timeout_s, retries=retries, precheck=precheck is not None,
                                precheck_timeout_s=precheck_timeout_s, max_prechecks=precheck_workers)
        self._offset = time.time() - time.monotonic()
        self._answers: queue.Queue[tuple[int, str, Any]] = queue.Queue()
        self._locks: dict[str, DeviceSlot] = {}
        self._hw_of: dict[str, str] = {}
        self._slots, self._ahead = slots, build_ahead
        self._closed = False
        for cls, n in devices.items():
            for i in range(n):
                self._add(f"{cls}:local:{i}", cls)

    # --- the protocol ------------------------------------------------------------------------------------------

    def submit(self, key: str, request: Any, hardware: str, priority: int = 0) -> None:
        if self._closed:
            raise RuntimeError("dispatcher is shut down")
        self._sched.submit(key, request, hardware, priority, time.monotonic())

    def poll(self, timeout: float | None = None) -> list[tuple[str, str, EvalResult]]:
        """Results ``(key, hardware, result)`` in completion order; waits up to ``timeout`` s for the first one
        (``None``: until one comes or nothing is pending)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            self._start(now)
            if self._sched.has_output() or not self._sched.in_flight() or (end is not None and now >= end):
                self._start(now)
                return [(k, hw, stamped(r, t, self._offset)) for k, hw, r, t in self._sched.take()]
            limits = [t for t in (end, self._sched.next_deadline()) if t is not None]
            wait = max(0.0, min(limits) - now) if limits else None
            try:
                answer = self._answers.get(timeout=None if wait is None else wait + 1e-3)
            except queue.Empty:
                answer = None
            while answer is not None:
                self._handle(*answer)
                try:
                    answer = self._answers.get_nowait()
                except queue.Empty:
                    answer = None
            self._sched.expire(time.monotonic())
            self._replace_doomed()

    def withdraw(self) -> list[str]:
        return self._sched.withdraw()

    def in_flight(self) -> set[str]:
        return self._sched.in_flight()

    def capacity(self) -> dict[str, int]:
        return dict(self._devices)

    def shutdown(self) -> None:
        """Forget everything undelivered; running threads finish unread."""
        self._closed = True

    # --- inside ------------------------------------------------------------------------------------------------

    def _add(self, device: str, cls: str) -> None:
        slots = self._slots.get(cls, 1) if isinstance(self._slots, Mapping) else self._slots
        ahead = self._ahead.get(cls, 0) if isinstance(self._ahead, Mapping) else self._ahead
        self._sched.add_device(device, cls, slots + ahead)      # the evaluations beyond the verify slots build
        self._locks[device] = DeviceSlot(slots)
        self._hw_of[device] = cls

    def _replace_doomed(self) -> None:
        """A device the scheduler gave up (timed out, poisoned, worker lost) comes back with a fresh lock: locally
        the device itself is still there."""
        for device, why in self._sched.take_doomed():
            log.info("replacing local device %s (%s)", device, why)
        known = set(self._sched.devices())
        for device, cls in list(self._hw_of.items()):
            if device not in known:
                self._add(device, cls)

    def _start(self, now: float) -> None:
        self._replace_doomed()
        for ticket in self._sched.assign(now):
            threading.Thread(target=self._run, args=(ticket,), daemon=True,
                             name=f"kswarm-{ticket.stage}-{ticket.id}").start()

    def _run(self, ticket: Ticket) -> None:
        try:
            if ticket.stage == "precheck":
                value = self._precheck(ticket.request)
            else:
                value = call_evaluate(self._evaluate, ticket.request, self._locks[ticket.device], self._takes_slot)
            self._answers.put((ticket.id, "done", value))
        except WorkerLost as exc:
            self._answers.put((ticket.id, "lost", f"WorkerLost: {exc}"))
        except Exception as exc:  # the function's bug: delivered as crashed (evaluate) or passed on (precheck)
            text = str(exc).strip().splitlines()
            self._answers.put((ticket.id, "raised", f"{type(exc).__name__}: {text[0] if text else ''}"))

    def _handle(self, ticket_id: int, kind: str, value: Any) -> None:
        now = time.monotonic()
        if kind == "done":
            self._sched.done(ticket_id, value, now)
        elif kind == "lost":
            self._sched.lost(ticket_id, value, now)
            self._replace_doomed()
        else:
            self._sched.raised(ticket_id, value, now)
