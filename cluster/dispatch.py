"""Dispatch of evaluations to evaluator actors pinned to hardware classes.

Contract of ``Dispatcher``:
- every submitted key is delivered by ``poll`` exactly once, with an ``EvalResult``, unless its hardware class has
  no node for longer than ``wait_s`` (then ``poll`` raises ``HardwareUnavailable`` naming the keys, which are
  dropped undelivered);
- the cheap checks (``precheck``) run on CPU workers first; only a request that passes them takes device time;
- at most ``max_in_flight_per_actor`` requests wait on one actor, and an actor evaluates one at a time;
- work lost to a dead actor, worker or node is dispatched again, at most ``retries`` times, then delivered as
  ``crashed``;
- an evaluation running longer than ``timeout_s`` is delivered as ``timeout`` and its actor is killed and replaced;
  so is an actor whose result says the device context is poisoned (a CUDA error);
- it is driven from one thread, the caller's: nothing happens between calls to ``submit`` and ``poll``.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import re
import time
from typing import Any, Literal

import ray
from ray.exceptions import RayError, RayTaskError

from cluster import actors
from cluster.pool import EvaluatorPool, HardwareUnavailable, Slot, wait_for_hardware
from evaluators.policy import EvalRequest
from evaluators.result import EvalResult, Status

logger = logging.getLogger(__name__)

_POISON = re.compile(r"cuda|cudnn|cublas|illegal memory access|device-side assert|launch failure", re.IGNORECASE)


def poisons_device(result: EvalResult) -> bool:
    """Whether the result says the device context may be unusable, so the actor must not be reused."""
    return result.status is Status.CRASHED and bool(_POISON.search(result.reason))


@dataclasses.dataclass(eq=False)
class _Work:
    key: str
    req: EvalRequest
    hardware: str
    prechecked: bool = False
    attempts: int = 0                  # times lost to a dead actor, worker or node
    priority: int = 0                  # lower goes to a device sooner; equal ones in arrival order


@dataclasses.dataclass(eq=False)
class _Flight:
    ref: Any
    work: _Work
    stage: Literal["precheck", "evaluate"]
    slot: Slot | None
    submitted_at: float


class Dispatcher:
    """Sends each request to an evaluator of its hardware class and hands back results in completion order.

    ``evaluate`` and ``precheck`` are import paths ("pkg.mod:fn") or callables, run on the workers. Ray must be
    initialised (``cluster.runtime.ensure_ray``).
    """

    def __init__(self, targets: list[str], evaluate_path: actors.FunctionRef,
                 precheck_path: actors.FunctionRef | None = None, max_in_flight_per_actor: int = 1,
                 timeout_s: float = 1800.0, retries: int = 2, wait_s: float = 0.0,
                 precheck_timeout_s: float | None = None, max_prechecks_in_flight: int | None = None,
                 precheck_num_cpus: float = 1.0, start_timeout_s: float = 300.0, rescan_s: float = 2.0):
        if not targets:
            raise ValueError("no target hardware classes")
        if max_in_flight_per_actor < 1:
            raise ValueError("max_in_flight_per_actor must be at least 1")
        if isinstance(evaluate_path, str):
            actors.resolve(evaluate_path)          # an unimportable path fails here, not in every actor
        if isinstance(precheck_path, str):
            actors.resolve(precheck_path)
        self.targets = list(dict.fromkeys(targets))
        self._evaluate, self._precheck = evaluate_path, precheck_path
        self._max_in_flight, self._timeout_s, self._retries = max_in_flight_per_actor, timeout_s, retries
        self._wait_s, self._rescan_s = wait_s, rescan_s
        self._precheck_timeout_s = timeout_s if precheck_timeout_s is None else precheck_timeout_s
        self._precheck_cpus = precheck_num_cpus
        self._max_prechecks = max_prechecks_in_flight

        self._pending: dict[str, _Work] = {}
        self._delivered: set[str] = set()
        self._precheck_queue: collections.deque[_Work] = collections.deque()
        self._queues: dict[str, collections.deque[_Work]] = {c: collections.deque() for c in self.targets}
        self._flights: dict[Any, _Flight] = {}
        self._starved_since: dict[str, float] = {}
        self._out: list[tuple[str, str, EvalResult]] = []
        self._last_scan = 0.0
        self._closed = False

        wait_for_hardware(self.targets, wait_s)
        self._pool = EvaluatorPool(self.targets, evaluate_path, max_start_failures=retries,
                                   start_timeout_s=start_timeout_s)
        self._reconcile()
        if self._max_prechecks is None:
            # as many as the CPUs left beside the cpu evaluators, so that a check never waits in Ray's queue
            # while its time limit runs
            spare = ray.cluster_resources().get("CPU", 1) - self._pool.capacity().get("cpu", 0)
            self._max_prechecks = max(1, int(spare // max(precheck_num_cpus, 1e-9)))

    # --- public ------------------------------------------------------------------------------------------------

    def submit(self, key: str, req: EvalRequest, hardware: str, priority: int = 0) -> None:
        """Queue ``req`` for a device of class ``hardware``; ``key`` names it in ``poll``'s results. Of the work
        waiting for a device of one class, the lowest ``priority`` starts first (ties in arrival order)."""
        if self._closed:
            raise RuntimeError("dispatcher is shut down")
        if hardware not in self._queues:
            raise ValueError(f"hardware {hardware!r} is not a target of this dispatcher; targets: "
                             f"{', '.join(self.targets)}")
        if key in self._pending or key in self._delivered:
            raise ValueError(f"key {key!r} was already submitted")
        work = _Work(key=key, req=req, hardware=hardware, priority=priority)
        self._pending[key] = work
        if self._precheck is None:
            work.prechecked = True
            self._enqueue(work)
        else:
            self._precheck_queue.append(work)

    def poll(self, timeout: float | None = None) -> list[tuple[str, str, EvalResult]]:
        """Results ``(key, hardware, result)`` in completion order; waits up to ``timeout`` s for the first one.

        ``timeout=None`` waits until a result comes or nothing is pending; ``0`` only collects what is done.
        """
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now - self._last_scan >= self._rescan_s:
                self._reconcile()
            self._check_starvation(now)
            self._pump(now)
            refs = list(self._flights) + list(self._pool.starting)
            if self._out or not self._pending:
                wait_s = 0.0
            else:
                wait_s = self._next_deadline(now) - now
                if end is not None:
                    wait_s = min(wait_s, end - now)
                wait_s = max(0.0, min(wait_s, self._rescan_s))
            if refs:
                ready, _ = ray.wait(refs, num_returns=1, timeout=wait_s)
                if ready and len(refs) > 1:
                    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                for ref in ready:
                    self._handle(ref)
            elif wait_s > 0:
                time.sleep(wait_s)          # work queued, no actor yet: waiting for hardware
            now = time.monotonic()
            self._check_timeouts(now)
            if self._out or not self._pending or (end is not None and now >= end):
                self._pump(now)             # keep the devices busy while the caller handles these results
                out, self._out = self._out, []
                return out

    def withdraw(self) -> list[str]:
        """Take back every submitted key that has not reached a device: queued, or still in its cheap checks (those
        run to their end unread). Work already on a device runs on and is delivered as usual; a withdrawn key never
        is.
        Returns the keys taken back, in submission order."""
        out: list[_Work] = []
        for queue in (self._precheck_queue, *self._queues.values()):
            out += queue
            queue.clear()
        for ref, flight in list(self._flights.items()):
            if flight.stage == "precheck":
                del self._flights[ref]              # abandoned, not cancelled: see _check_timeouts
                out.append(flight.work)
        keys = {w.key for w in out}
        taken = [k for k in self._pending if k in keys]        # the dict keeps submission order
        for key in taken:
            del self._pending[key]
        return taken

    def in_flight(self) -> set[str]:
        """Keys submitted and not yet delivered (in cheap checks, queued, or on a device)."""
        return set(self._pending)

    def capacity(self) -> dict[str, int]:
        """Devices per target class on alive nodes, as last seen."""
        return self._pool.capacity()

    def shutdown(self) -> None:
        """Kill the actors; cheap checks run to their end unread (the job's end stops them); undelivered keys are
        dropped. Ray itself stays up."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown()
        self._flights.clear()

    # --- actors --------------------------------------------------------------------------------------------------

    def _reconcile(self) -> None:
        """Match the actors to the alive nodes' devices; work on a node that left is lost, the running one charged."""
        self._last_scan = time.monotonic()
        for slot in self._pool.reconcile():
            head = self._flights.get(slot.inflight[0]) if slot.inflight else None
            self._requeue_slot(slot, why="node gone", charged=head)

    def _retire(self, slot: Slot, why: str = "", charged: _Flight | None = None, skip: _Flight | None = None):
        """Kill ``slot``'s actor, re-queue its work and spawn its replacement."""
        self._pool.retire(slot)
        self._requeue_slot(slot, why, charged, skip)
        self._reconcile()

    def _requeue_slot(self, slot: Slot, why: str = "", charged: _Flight | None = None,
                      skip: _Flight | None = None) -> None:
        """Put a retired slot's work, but ``skip``, back in front of its queue; ``charged`` counts as lost."""
        for ref in reversed(slot.inflight):
            flight = self._flights.pop(ref, None)
            if flight is None and charged is not None and charged.ref == ref:
                flight = charged
            if flight is None or flight is skip:
                continue
            self._requeue(flight.work, why if flight is charged else None)
        slot.inflight.clear()

    def _requeue(self, work: _Work, lost_because: str | None) -> None:
        if lost_because is not None:
            work.attempts += 1
            if work.attempts > self._retries:
                self._deliver(work, EvalResult(
                    status=Status.CRASHED, device=work.req.device,
                    reason=f"evaluation lost {work.attempts} times (actor, worker or node died); "
                           f"last: {lost_because}"))
                return
            logger.warning("re-dispatching %s (attempt %d): %s", work.key, work.attempts + 1, lost_because)
        queue = self._queues[work.hardware] if work.prechecked else self._precheck_queue
        queue.appendleft(work)

    def _enqueue(self, work: _Work) -> None:
        """Into its class's queue after every item of the same or a lower priority."""
        queue = self._queues[work.hardware]
        at = len(queue)
        while at > 0 and queue[at - 1].priority > work.priority:
            at -= 1
        queue.insert(at, work)

    # --- the loop ------------------------------------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        """Start cheap checks first, then hand queued work to free actors."""
        n_pre = sum(1 for f in self._flights.values() if f.stage == "precheck")
        while self._precheck_queue and n_pre < self._max_prechecks:
            work = self._precheck_queue.popleft()
            ref = actors.spawn_precheck(self._precheck, work.req, num_cpus=self._precheck_cpus)
            self._flights[ref] = _Flight(ref, work, "precheck", None, now)
            n_pre += 1
        for cls, queue in self._queues.items():
            if not queue:
                continue
            free = [s for s in self._pool.slots[cls] if len(s.inflight) < self._max_in_flight]
            while queue and free:
                slot = min(free, key=lambda s: len(s.inflight))
                work = queue.popleft()
                ref = slot.handle.evaluate.remote(work.req)
                if not slot.inflight and slot.ready_at is not None:
                    slot.head_started = now
                slot.inflight.append(ref)
                self._flights[ref] = _Flight(ref, work, "evaluate", slot, now)
                if len(slot.inflight) >= self._max_in_flight:
                    free.remove(slot)

    def _handle(self, ref: Any) -> None:
        now = time.monotonic()
        if ref in self._pool.starting:
            failed = self._pool.on_ready(ref, now)
            if failed is not None:
                self._requeue_slot(failed)
                self._reconcile()
            return
        flight = self._flights.pop(ref, None)
        if flight is None:
            return
        try:
            value = ray.get(ref)
        except RayTaskError as exc:     # the function itself raised: a bug in it, not a lost worker
            self._on_raised(flight, exc, now)
        except RayError as exc:
            self._on_lost(flight, exc)
        else:
            self._on_value(flight, value, now)

    def _advance(self, slot: Slot, ref: Any, now: float) -> None:
        """``ref`` finished on ``slot``: the next request in flight starts running now."""
        if ref in slot.inflight:
            slot.inflight.remove(ref)
        self._pool.mark_ready(slot, now)
        slot.head_started = now if slot.inflight else None

    def _on_value(self, flight: _Flight, value: EvalResult | None, now: float) -> None:
        work = flight.work
        if flight.stage == "precheck":
            if value is None:
                work.prechecked = True
                self._enqueue(work)
            else:
                self._deliver(work, value)
            return
        slot = flight.slot
        self._advance(slot, flight.ref, now)
        if poisons_device(value):
            logger.warning("%s evaluator on node %s poisoned by %s (%s); replacing it", slot.hw_class,
                           slot.node_id[:8], work.key, value.reason)
            self._retire(slot)
        self._deliver(work, value)

    def _on_raised(self, flight: _Flight, exc: RayTaskError, now: float) -> None:
        work = flight.work
        if flight.stage == "precheck":
            logger.warning("precheck raised for %s, sending it to the device: %s", work.key, _first_line(exc))
            work.prechecked = True
            self._enqueue(work)
            return
        self._advance(flight.slot, flight.ref, now)
        logger.error("evaluator raised for %s: %s", work.key, exc)
        self._deliver(work, EvalResult(status=Status.CRASHED, device=work.req.device,
                                       reason=f"evaluator raised {_first_line(exc.cause or exc)}"))

    def _on_lost(self, flight: _Flight, exc: RayError) -> None:
        why = _first_line(exc)
        if flight.slot is not None and not flight.slot.retired:
            self._retire(flight.slot, why=why, charged=flight)
        else:
            self._requeue(flight.work, why)

    def _check_timeouts(self, now: float) -> None:
        for ref, flight in list(self._flights.items()):
            if flight.stage == "precheck" and now - flight.submitted_at > self._precheck_timeout_s:
                # Abandoned, not cancelled: ray.cancel of a task that is finishing races with its reply and can
                # abort the driver (a RAY_CHECK in Ray's task manager: "Tried to complete task that was not
                # pending"). The task ends within its sandbox's wall-clock limit; its result is never read.
                del self._flights[ref]
                self._deliver(flight.work, self._timeout_result(flight.work, self._precheck_timeout_s, "cheap checks"))
        for slot in self._pool.stale_starts(now):
            self._requeue_slot(slot)
        for slots in self._pool.slots.values():
            for slot in [s for s in slots if s.head_started is not None and now - s.head_started > self._timeout_s]:
                flight = self._flights[slot.inflight[0]]
                logger.warning("%s ran past %g s on %s node %s; killing and replacing its evaluator",
                               flight.work.key, self._timeout_s, slot.hw_class, slot.node_id[:8])
                self._retire(slot, skip=flight)
                self._deliver(flight.work, self._timeout_result(flight.work, self._timeout_s, slot.hw_class,
                                                                slot.info))

    def _timeout_result(self, work: _Work, limit: float, where: str, info: dict | None = None) -> EvalResult:
        return EvalResult(status=Status.TIMEOUT, device=work.req.device,
                          reason=f"no result within {limit:g} s ({where}); its worker was killed",
                          provenance={"cluster": dict(info or {})})

    def _next_deadline(self, now: float) -> float:
        deadlines = [now + self._rescan_s]
        deadlines += [f.submitted_at + self._precheck_timeout_s for f in self._flights.values()
                      if f.stage == "precheck"]
        deadlines += [s.head_started + self._timeout_s for slots in self._pool.slots.values() for s in slots
                      if s.head_started is not None]
        start = self._pool.next_start_deadline()
        return min(deadlines + ([start] if start is not None else []))

    def _check_starvation(self, now: float) -> None:
        have = self._pool.capacity()
        for cls in self.targets:
            if have.get(cls, 0) > 0:
                self._starved_since.pop(cls, None)
                continue
            waiting = [w.key for w in self._pending.values() if w.hardware == cls]
            if not waiting:
                self._starved_since.pop(cls, None)
                continue
            since = self._starved_since.setdefault(cls, now)
            if now - since < self._wait_s:
                continue
            for ref, flight in list(self._flights.items()):
                if flight.work.hardware == cls:
                    del self._flights[ref]
            self._queues[cls].clear()
            self._precheck_queue = collections.deque(w for w in self._precheck_queue if w.hardware != cls)
            for key in waiting:
                del self._pending[key]
            self._starved_since.pop(cls, None)
            raise HardwareUnavailable([cls], {c: n for c, n in have.items() if n}, keys=waiting,
                                      waited_s=round(now - since, 1))

    def _deliver(self, work: _Work, result: EvalResult) -> None:
        if work.key in self._delivered or self._pending.pop(work.key, None) is None:
            logger.error("dropping a second result for %s", work.key)
            return
        self._delivered.add(work.key)
        self._out.append((work.key, work.hardware, result))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
