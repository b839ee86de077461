"""The scheduling policy as a pure state machine: queues, priorities, retries, timeouts, withdrawal, poisoned devices.

No Ray, no threads, no clock of its own: an adapter (``search.local_dispatch`` in-process, ``cluster.dispatch`` on
Ray) tells it what happened, with the time, and asks it what to start. Contract:

- every submitted key is delivered exactly once, with an ``EvalResult``, unless it is withdrawn (never delivered)
  or its class has no device for longer than ``wait_s`` (``starved`` drops it and names it);
- the cheap checks (when there are any) run first, at most ``max_prechecks`` at a time, the lowest ``priority``
  first (ties in arrival order); only work that passes them goes to a device;
- of the work waiting for a device of one class the lowest ``priority`` starts first, ties in arrival order; work
  sent back after a loss goes first;
- a device runs at most ``slots`` evaluations at a time;
- work lost with its worker (``lost``) is sent again at most ``retries`` times, then delivered as ``crashed``;
- an evaluation running longer than ``timeout_s`` is delivered as ``timeout`` and its device is doomed: the adapter
  kills the worker (``take_doomed``) and may add a fresh one; so is a device whose result says it is poisoned.

Each start is a ticket: results come back by ticket, so a late answer from a killed worker is ignored. What the
campaign asks of a dispatcher, and the evaluator's side of the joint, are in ``search.protocol``.
"""
from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
from typing import Any, Literal

from evaluators.result import EvalResult, Status
from search.protocol import poisoned

log = logging.getLogger(__name__)

Stage = Literal["precheck", "evaluate"]


@dataclasses.dataclass(frozen=True)
class Ticket:
    """One start of one key: on a device (``evaluate``) or on a CPU worker (``precheck``)."""

    id: int
    key: str
    hardware: str
    stage: Stage
    device: str | None
    request: Any
    attempt: int
    sent_at: float


@dataclasses.dataclass(frozen=True)
class Timing:
    """Where one evaluation's time went, on the scheduler's clock (seconds)."""

    device: str | None          # None: delivered without reaching a device (precheck verdict, timeout there)
    submitted_at: float
    started_at: float | None    # on the device
    ended_at: float
    precheck_s: float
    queue_s: float              # waiting for a device, after the cheap checks
    attempts: int


@dataclasses.dataclass(eq=False)
class _Work:
    key: str
    request: Any
    hardware: str
    priority: int
    seq: int
    submitted_at: float
    prechecked: bool = False
    attempts: int = 0                  # times lost with a worker
    queued_at: float = 0.0             # entered the device queue (last time)
    queue_s: float = 0.0
    precheck_s: float = 0.0
    state: str = "new"                 # precheck_queue | prechecking | queued | running | done


@dataclasses.dataclass(eq=False)
class _Device:
    id: str
    hardware: str
    slots: int
    ready: bool = False
    running: dict[int, Ticket] = dataclasses.field(default_factory=dict)


class Scheduler:
    def __init__(self, targets: list[str], *, timeout_s: float, retries: int = 2, precheck: bool = False,
                 precheck_timeout_s: float | None = None, max_prechecks: int = 1, wait_s: float = 0.0):
        if not targets:
            raise ValueError("no target hardware classes")
        self.targets = list(dict.fromkeys(targets))
        self.timeout_s, self.retries, self.wait_s = timeout_s, retries, wait_s
        self.precheck = precheck
        self.precheck_timeout_s = timeout_s if precheck_timeout_s is None else precheck_timeout_s
        self.max_prechecks = max(1, max_prechecks)
        self._work: dict[str, _Work] = {}                  # submitted, not delivered; dict keeps submission order
        self._delivered: set[str] = set()
        self._pre_queue: list[tuple[int, int, int, _Work]] = []    # a heap, as the device queues
        self._queues: dict[str, list[tuple[int, int, int, _Work]]] = {c: [] for c in self.targets}
        self._tickets: dict[int, Ticket] = {}
        self._devices: dict[str, _Device] = {}
        self._doomed: list[tuple[str, str]] = []           # (device id, why)
        self._starved_since: dict[str, float] = {}
        self._out: list[tuple[str, str, EvalResult, Timing]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)

    # --- the caller's side ------------------------------------------------------------------------------------

    def submit(self, key: str, request: Any, hardware: str, priority: int, now: float) -> None:
        if hardware not in self._queues:
            raise ValueError(f"hardware {hardware!r} is not a target of this dispatcher; targets: "
                             f"{', '.join(self.targets)}")
        if key in self._work or key in self._delivered:
            raise ValueError(f"key {key!r} was already submitted")
        work = _Work(key, request, hardware, priority, next(self._seq), submitted_at=now)
        self._work[key] = work
        if self.precheck:
            work.state = "precheck_queue"
            heapq.heappush(self._pre_queue, (1, priority, work.seq, work))
        else:
            work.prechecked = True
            self._enqueue(work, now)

    def withdraw(self) -> list[str]:
        """Take back every key that has not reached a device (queued or in its cheap checks), in submission order.
        A precheck running for one is forgotten: its answer is ignored."""
        taken = [k for k, w in self._work.items() if w.state in ("precheck_queue", "prechecking", "queued")]
        for key in taken:
            self._drop(self._work.pop(key))
        self._forget_prechecks()
        return taken

    def in_flight(self) -> set[str]:
        return set(self._work)

    def pending_by_class(self) -> dict[str, int]:
        out = dict.fromkeys(self.targets, 0)
        for w in self._work.values():
            out[w.hardware] += 1
        return out

    def take(self) -> list[tuple[str, str, EvalResult, Timing]]:
        """Delivered results, in completion order, since the last call."""
        out, self._out = self._out, []
        return out

    def has_output(self) -> bool:
        return bool(self._out)

    # --- devices ----------------------------------------------------------------------------------------------

    def add_device(self, device: str, hardware: str, slots: int = 1, ready: bool = True) -> None:
        if device in self._devices:
            raise ValueError(f"device {device!r} is already known")
        self._devices[device] = _Device(device, hardware, max(1, slots), ready)

    def device_ready(self, device: str) -> None:
        if device in self._devices:
            self._devices[device].ready = True

    def remove_device(self, device: str, now: float, charged: int | None = None, why: str = "") -> None:
        """The device's worker is gone (killed, died, its node left): its work goes back to the front of its queue;
        the ticket ``charged`` counts as lost (the others were innocent bystanders)."""
        dev = self._devices.pop(device, None)
        if dev is None:
            return
        for ticket in sorted(dev.running.values(), key=lambda t: t.id, reverse=True):
            self._tickets.pop(ticket.id, None)
            self._requeue(ticket, now, why if ticket.id == charged else None)

    def devices(self, hardware: str | None = None) -> list[str]:
        return [d.id for d in self._devices.values() if hardware is None or d.hardware == hardware]

    def running_on(self, device: str) -> list[Ticket]:
        dev = self._devices.get(device)
        return sorted(dev.running.values(), key=lambda t: t.id) if dev else []

    def take_doomed(self) -> list[tuple[str, str]]:
        """Devices whose workers must be killed (timed out, poisoned), each with why; already removed here."""
        out, self._doomed = self._doomed, []
        return out

    # --- what to start ----------------------------------------------------------------------------------------

    def assign(self, now: float) -> list[Ticket]:
        """Start cheap checks first, then hand queued work to ready devices with a free slot, least loaded first."""
        out = []
        n_pre = sum(1 for t in self._tickets.values() if t.stage == "precheck")
        while self._pre_queue and n_pre < self.max_prechecks:
            _, _, _, work = heapq.heappop(self._pre_queue)
            work.state = "prechecking"
            out.append(self._ticket(work, "precheck", None, now))
            n_pre += 1
        for cls, queue in self._queues.items():
            free = [d for d in self._devices.values() if d.hardware == cls and d.ready and len(d.running) < d.slots]
            while queue and free:
                _, _, _, work = heapq.heappop(queue)
                if work.state != "queued" or self._work.get(work.key) is not work:
                    continue                    # withdrawn or starved while it waited
                dev = min(free, key=lambda d: len(d.running))
                work.state = "running"
                work.queue_s += now - work.queued_at
                ticket = self._ticket(work, "evaluate", dev.id, now)
                dev.running[ticket.id] = ticket
                out.append(ticket)
                if len(dev.running) >= dev.slots:
                    free.remove(dev)
        return out

    def next_deadline(self) -> float | None:
        times = [t.sent_at + (self.precheck_timeout_s if t.stage == "precheck" else self.timeout_s)
                 for t in self._tickets.values()]
        return min(times) if times else None

    # --- what happened ----------------------------------------------------------------------------------------

    def done(self, ticket_id: int, result: EvalResult | None, now: float) -> None:
        """A ticket's answer. For a precheck ``None`` means passed; for an evaluation it is the result."""
        ticket = self._close(ticket_id)
        if ticket is None:
            return
        work = self._work.get(ticket.key)
        if ticket.stage == "precheck":
            if work is None:
                return
            work.precheck_s = now - ticket.sent_at
            if result is None:
                work.prechecked = True
                self._enqueue(work, now)
            else:
                self._deliver(work, result, now, None)
            return
        if poisoned(result):
            log.warning("%s device %s poisoned by %s (%s); replacing its worker", ticket.hardware, ticket.device,
                        ticket.key, result.reason)
            self._doom(ticket.device, now, f"poisoned by {ticket.key}")
        if work is not None:
            self._deliver(work, result, now, ticket)

    def raised(self, ticket_id: int, error: str, now: float) -> None:
        """The function itself raised: a bug in it, not a lost worker. A precheck that raised sends its work on to
        the device; an evaluation that raised is delivered as ``crashed``."""
        ticket = self._tickets.get(ticket_id)
        if ticket is None:
            return
        if ticket.stage == "precheck":
            log.warning("precheck raised for %s, sending it to the device: %s", ticket.key, error)
            self._close(ticket_id)
            work = self._work.get(ticket.key)
            if work is not None:
                work.precheck_s = now - ticket.sent_at
                work.prechecked = True
                self._enqueue(work, now)
            return
        log.error("evaluator raised for %s: %s", ticket.key, error)
        self.done(ticket_id, EvalResult(status=Status.CRASHED, device=_device_of(ticket.request),
                                        reason=f"evaluator raised {error}"), now)

    def lost(self, ticket_id: int, why: str, now: float) -> str | None:
        """The ticket's worker died. Its work is charged and sent again (or delivered as ``crashed`` past the
        retries); the device is gone with the others on it sent again uncharged. Returns the device id lost."""
        ticket = self._tickets.get(ticket_id)
        if ticket is None:
            return None
        if ticket.device is not None:
            self.remove_device(ticket.device, now, charged=ticket_id, why=why)
            return ticket.device
        self._close(ticket_id)
        self._requeue(ticket, now, why)
        return None

    def expire(self, now: float) -> None:
        """Deliver every ticket past its limit as ``timeout``; a device whose evaluation timed out is doomed."""
        for ticket in [t for t in self._tickets.values() if now - t.sent_at > self._limit(t)]:
            if ticket.id not in self._tickets:
                continue                        # its device was doomed for another ticket in this pass
            limit = self._limit(ticket)
            where = "cheap checks" if ticket.stage == "precheck" else ticket.hardware
            result = EvalResult(status=Status.TIMEOUT, device=_device_of(ticket.request),
                                reason=f"no result within {limit:g} s ({where}); its worker was killed")
            if ticket.stage == "precheck":
                # abandoned, not killed: a cheap check ends within its own sandbox limit, unread
                self._close(ticket.id)
            else:
                log.warning("%s ran past %g s on %s; killing and replacing its worker", ticket.key, limit,
                            ticket.device)
                self._doom(ticket.device, now, f"{ticket.key} timed out", skip=ticket.id)
            work = self._work.get(ticket.key)
            if work is not None:
                self._deliver(work, result, now, ticket if ticket.stage == "evaluate" else None)

    def starved(self, now: float, available: dict[str, int]) -> dict[str, tuple[list[str], float]]:
        """Classes with work waiting and no device in ``available`` (devices per class) for more than ``wait_s``:
        their keys are dropped undelivered and returned with how long they waited."""
        out = {}
        for cls in self.targets:
            waiting = [k for k, w in self._work.items() if w.hardware == cls]
            if available.get(cls, 0) > 0 or not waiting:
                self._starved_since.pop(cls, None)
                continue
            since = self._starved_since.setdefault(cls, now)
            if now - since < self.wait_s:
                continue
            for key in waiting:
                self._drop(self._work.pop(key))
            self._forget_prechecks()
            self._starved_since.pop(cls, None)
            out[cls] = (waiting, now - since)
        return out

    # --- inside -----------------------------------------------------------------------------------------------

    def _limit(self, ticket: Ticket) -> float:
        return self.precheck_timeout_s if ticket.stage == "precheck" else self.timeout_s

    def _ticket(self, work: _Work, stage: Stage, device: str | None, now: float) -> Ticket:
        ticket = Ticket(next(self._ids), work.key, work.hardware, stage, device, work.request, work.attempts, now)
        self._tickets[ticket.id] = ticket
        return ticket

    def _close(self, ticket_id: int) -> Ticket | None:
        ticket = self._tickets.pop(ticket_id, None)
        if ticket is not None and ticket.device is not None and ticket.device in self._devices:
            self._devices[ticket.device].running.pop(ticket_id, None)
        return ticket

    def _doom(self, device: str, now: float, why: str, skip: int | None = None) -> None:
        dev = self._devices.get(device)
        if dev is None:
            return
        if skip is not None:
            self._close(skip)
        self.remove_device(device, now)
        self._doomed.append((device, why))

    def _enqueue(self, work: _Work, now: float, front: bool = False) -> None:
        work.state, work.queued_at = "queued", now
        heapq.heappush(self._queues[work.hardware], (0 if front else 1, work.priority, work.seq, work))

    def _requeue(self, ticket: Ticket, now: float, lost_because: str | None) -> None:
        work = self._work.get(ticket.key)
        if work is None:
            return
        if lost_because is not None:
            work.attempts += 1
            if work.attempts > self.retries:
                self._deliver(work, EvalResult(
                    status=Status.CRASHED, device=_device_of(work.request),
                    reason=f"evaluation lost {work.attempts} times (actor, worker or node died); "
                           f"last: {lost_because}"), now, None)
                return
            log.warning("re-dispatching %s (attempt %d): %s", work.key, work.attempts + 1, lost_because)
        if work.prechecked:
            self._enqueue(work, now, front=True)
        else:
            work.state = "precheck_queue"
            heapq.heappush(self._pre_queue, (0, work.priority, work.seq, work))

    def _forget_prechecks(self) -> None:
        """The cheap-check queue without the work no longer submitted (withdrawn or dropped)."""
        self._pre_queue = [e for e in self._pre_queue if e[3].key in self._work]
        heapq.heapify(self._pre_queue)

    def _drop(self, work: _Work) -> None:
        work.state = "done"
        for tid in [t.id for t in self._tickets.values() if t.key == work.key and t.stage == "precheck"]:
            self._close(tid)

    def _deliver(self, work: _Work, result: EvalResult, now: float, ticket: Ticket | None) -> None:
        if work.key in self._delivered or self._work.pop(work.key, None) is None:
            log.error("dropping a second result for %s", work.key)
            return
        work.state = "done"
        self._delivered.add(work.key)
        timing = Timing(device=ticket.device if ticket else None, submitted_at=work.submitted_at,
                        started_at=ticket.sent_at if ticket else None, ended_at=now, precheck_s=work.precheck_s,
                        queue_s=work.queue_s, attempts=work.attempts)
        self._out.append((work.key, work.hardware, result, timing))


def _device_of(request: Any) -> str:
    return getattr(request, "device", "cpu")

