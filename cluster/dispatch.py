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

from cluster import actors, hardware
from evaluators.policy import EvalRequest
from evaluators.result import EvalResult, Status

logger = logging.getLogger(__name__)

_POISON = re.compile(r"cuda|cudnn|cublas|illegal memory access|device-side assert|launch failure", re.IGNORECASE)


class HardwareUnavailable(RuntimeError):
    """No alive node offers these hardware classes. ``keys`` are the submitted keys dropped undelivered."""

    def __init__(self, missing: list[str], available: dict[str, int], keys: list[str] = (), waited_s: float = 0.0):
        self.missing, self.available, self.keys = list(missing), dict(available), list(keys)
        have = ", ".join(f"{c} ({n})" for c, n in sorted(available.items())) or "none"
        super().__init__(
            f"no node of the Ray cluster offers hardware class {', '.join(missing)}"
            f"{f' (waited {waited_s:g} s)' if waited_s else ''}; classes available: {have}. Start one with "
            f"`kswarm node start --address <head>` on such a machine, or drop the target"
            + (f"; {len(self.keys)} submitted evaluations were not run" if self.keys else ""))


def poisons_device(result: EvalResult) -> bool:
    """Whether the result says the device context may be unusable, so the actor must not be reused."""
    return result.status is Status.CRASHED and bool(_POISON.search(result.reason))


def alive_hardware(classes: list[str] | None = None) -> dict[tuple[str, str], int]:
    """Devices per (node id, hardware class) on alive nodes, for ``classes`` (all ``hw:`` classes when None)."""
    out: dict[tuple[str, str], int] = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        for res, n in node.get("Resources", {}).items():
            if not res.startswith(hardware.RESOURCE_PREFIX) or int(n) < 1:
                continue
            cls = res[len(hardware.RESOURCE_PREFIX):]
            if classes is None or cls in classes:
                out[(node["NodeID"], cls)] = int(n)
    return out


def _per_class(desired: dict[tuple[str, str], int]) -> dict[str, int]:
    out: dict[str, int] = collections.Counter()
    for (_, cls), n in desired.items():
        out[cls] += n
    return dict(out)


@dataclasses.dataclass(eq=False)
class _Work:
    key: str
    req: EvalRequest
    hardware: str
    prechecked: bool = False
    attempts: int = 0                  # times lost to a dead actor, worker or node


@dataclasses.dataclass(eq=False)
class _Slot:
    """One evaluator actor on one device."""

    hw_class: str
    node_id: str
    handle: Any
    ready_ref: Any
    created_at: float
    ready_at: float | None = None
    head_started: float | None = None  # when the oldest request in flight began to run
    inflight: collections.deque = dataclasses.field(default_factory=collections.deque)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    retired: bool = False


@dataclasses.dataclass(eq=False)
class _Flight:
    ref: Any
    work: _Work
    stage: Literal["precheck", "evaluate"]
    slot: _Slot | None
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
        self._wait_s, self._start_timeout_s, self._rescan_s = wait_s, start_timeout_s, rescan_s
        self._precheck_timeout_s = timeout_s if precheck_timeout_s is None else precheck_timeout_s
        self._precheck_cpus = precheck_num_cpus
        cpus = int(ray.cluster_resources().get("CPU", 1) // max(precheck_num_cpus, 1e-9))
        self._max_prechecks = max_prechecks_in_flight or max(1, cpus)

        self._pending: dict[str, _Work] = {}
        self._delivered: set[str] = set()
        self._precheck_queue: collections.deque[_Work] = collections.deque()
        self._queues: dict[str, collections.deque[_Work]] = {c: collections.deque() for c in self.targets}
        self._flights: dict[Any, _Flight] = {}
        self._slots: dict[str, list[_Slot]] = {c: [] for c in self.targets}
        self._starting: dict[Any, _Slot] = {}     # ready ref -> slot not yet ready
        self._start_failures: collections.Counter[str] = collections.Counter()
        self._starved_since: dict[str, float] = {}
        self._out: list[tuple[str, str, EvalResult]] = []
        self._desired: dict[tuple[str, str], int] = {}
        self._last_scan = 0.0
        self._closed = False

        self._wait_for_targets()
        self._reconcile()

    # --- public ------------------------------------------------------------------------------------------------

    def submit(self, key: str, req: EvalRequest, hardware: str) -> None:
        """Queue ``req`` for a device of class ``hardware``; ``key`` names it in ``poll``'s results."""
        if self._closed:
            raise RuntimeError("dispatcher is shut down")
        if hardware not in self._queues:
            raise ValueError(f"hardware {hardware!r} is not a target of this dispatcher; targets: "
                             f"{', '.join(self.targets)}")
        if key in self._pending or key in self._delivered:
            raise ValueError(f"key {key!r} was already submitted")
        work = _Work(key=key, req=req, hardware=hardware)
        self._pending[key] = work
        if self._precheck is None:
            work.prechecked = True
            self._queues[hardware].append(work)
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
            refs = list(self._flights) + list(self._starting)
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

    def in_flight(self) -> set[str]:
        """Keys submitted and not yet delivered (in cheap checks, queued, or on a device)."""
        return set(self._pending)

    def capacity(self) -> dict[str, int]:
        """Devices per target class on alive nodes, as last seen."""
        per = _per_class(self._desired)
        return {c: per.get(c, 0) for c in self.targets}

    def shutdown(self) -> None:
        """Kill the actors and cancel the cheap checks; undelivered keys are dropped. Ray itself stays up."""
        if self._closed:
            return
        self._closed = True
        for ref, flight in list(self._flights.items()):
            if flight.stage == "precheck":
                ray.cancel(ref, force=True)
        for slots in self._slots.values():
            for slot in slots:
                self._kill(slot)
        self._flights.clear()
        self._starting.clear()

    # --- actors --------------------------------------------------------------------------------------------------

    def _wait_for_targets(self) -> None:
        start = time.monotonic()
        while True:
            desired = alive_hardware(None)
            have = _per_class(desired)
            missing = [c for c in self.targets if have.get(c, 0) == 0]
            for c in self.targets:
                if c not in missing:
                    logger.info("hardware %s: %d device(s) on %d node(s)", c, have[c],
                                sum(1 for (_, k) in desired if k == c))
            if not missing:
                return
            waited = time.monotonic() - start
            if waited >= self._wait_s:
                raise HardwareUnavailable(missing, have, waited_s=round(waited, 1))
            logger.warning("no node offers %s yet; waiting up to %g s", ", ".join(missing), self._wait_s)
            time.sleep(min(2.0, self._wait_s - waited))

    def _reconcile(self) -> None:
        """Make the live actors match the devices of alive nodes: spawn where missing, retire where gone."""
        self._last_scan = time.monotonic()
        self._desired = {k: n for k, n in alive_hardware(self.targets).items()
                         if self._start_failures[k[0]] <= self._retries}
        for cls, slots in self._slots.items():
            for slot in [s for s in slots if (s.node_id, cls) not in self._desired]:
                logger.warning("node %s no longer offers %s; retiring its evaluator", slot.node_id[:8], cls)
                head = self._flights.get(slot.inflight[0]) if slot.inflight else None
                self._retire(slot, why="node gone", charged=head)
            live = collections.Counter(s.node_id for s in self._slots[cls])
            for (node, c), n in self._desired.items():
                for _ in range(n - live[node] if c == cls else 0):
                    self._spawn(cls, node)

    def _spawn(self, cls: str, node_id: str) -> None:
        handle = actors.spawn_evaluator(cls, self._evaluate, node_id=node_id)
        slot = _Slot(hw_class=cls, node_id=node_id, handle=handle, ready_ref=handle.ready.remote(),
                     created_at=time.monotonic())
        self._slots[cls].append(slot)
        self._starting[slot.ready_ref] = slot
        logger.debug("spawned %s evaluator on node %s", cls, node_id[:8])

    def _kill(self, slot: _Slot) -> None:
        try:
            ray.kill(slot.handle, no_restart=True)
        except Exception as exc:  # an actor already gone; nothing to kill
            logger.debug("kill %s evaluator: %s", slot.hw_class, exc)

    def _retire(self, slot: _Slot, why: str = "", charged: _Flight | None = None, skip: _Flight | None = None):
        """Kill ``slot`` and put its work, but ``skip``, back in front of the queue; ``charged`` counts as lost."""
        if slot.retired:
            return
        slot.retired = True
        self._slots[slot.hw_class].remove(slot)
        self._starting.pop(slot.ready_ref, None)
        self._kill(slot)
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
            free = [s for s in self._slots[cls] if len(s.inflight) < self._max_in_flight]
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
        slot = self._starting.pop(ref, None)
        if slot is not None:
            self._on_ready(slot, ref, now)
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

    def _on_ready(self, slot: _Slot, ref: Any, now: float) -> None:
        try:
            slot.info = ray.get(ref)
        except RayError as exc:
            self._start_failures[slot.node_id] += 1
            logger.warning("%s evaluator on node %s failed to start: %s", slot.hw_class, slot.node_id[:8],
                           _first_line(exc))
            self._retire(slot)
            self._reconcile()
            return
        self._start_failures[slot.node_id] = 0
        slot.ready_at = now
        if slot.inflight and slot.head_started is None:
            slot.head_started = now

    def _advance(self, slot: _Slot, ref: Any, now: float) -> None:
        """``ref`` finished on ``slot``: the next request in flight starts running now."""
        if ref in slot.inflight:
            slot.inflight.remove(ref)
        if slot.ready_at is None:
            slot.ready_at = now
        slot.head_started = now if slot.inflight else None

    def _on_value(self, flight: _Flight, value: EvalResult | None, now: float) -> None:
        work = flight.work
        if flight.stage == "precheck":
            if value is None:
                work.prechecked = True
                self._queues[work.hardware].append(work)
            else:
                self._deliver(work, value)
            return
        slot = flight.slot
        self._advance(slot, flight.ref, now)
        if poisons_device(value):
            logger.warning("%s evaluator on node %s poisoned by %s (%s); replacing it", slot.hw_class,
                           slot.node_id[:8], work.key, value.reason)
            self._retire(slot)
            self._reconcile()
        self._deliver(work, value)

    def _on_raised(self, flight: _Flight, exc: RayTaskError, now: float) -> None:
        work = flight.work
        if flight.stage == "precheck":
            logger.warning("precheck raised for %s, sending it to the device: %s", work.key, _first_line(exc))
            work.prechecked = True
            self._queues[work.hardware].append(work)
            return
        self._advance(flight.slot, flight.ref, now)
        logger.error("evaluator raised for %s: %s", work.key, exc)
        self._deliver(work, EvalResult(status=Status.CRASHED, device=work.req.device,
                                       reason=f"evaluator raised {_first_line(exc.cause or exc)}"))

    def _on_lost(self, flight: _Flight, exc: RayError) -> None:
        why = _first_line(exc)
        if flight.slot is not None and not flight.slot.retired:
            self._retire(flight.slot, why=why, charged=flight)
            self._reconcile()
        else:
            self._requeue(flight.work, why)

    def _check_timeouts(self, now: float) -> None:
        for ref, flight in list(self._flights.items()):
            if flight.stage == "precheck" and now - flight.submitted_at > self._precheck_timeout_s:
                del self._flights[ref]
                ray.cancel(ref, force=True)
                self._deliver(flight.work, self._timeout_result(flight.work, self._precheck_timeout_s, "cheap checks"))
        for cls, slots in self._slots.items():
            for slot in list(slots):
                if slot.ready_at is None and now - slot.created_at > self._start_timeout_s:
                    self._start_failures[slot.node_id] += 1
                    logger.warning("%s evaluator on node %s not ready after %g s; replacing it", cls,
                                   slot.node_id[:8], self._start_timeout_s)
                    self._retire(slot)
                elif slot.head_started is not None and now - slot.head_started > self._timeout_s:
                    head = slot.inflight[0]
                    flight = self._flights[head]
                    logger.warning("%s ran past %g s on %s node %s; killing and replacing its evaluator",
                                   flight.work.key, self._timeout_s, cls, slot.node_id[:8])
                    self._retire(slot, skip=flight)
                    self._deliver(flight.work, self._timeout_result(flight.work, self._timeout_s, cls, slot.info))
                else:
                    continue
                self._reconcile()

    def _timeout_result(self, work: _Work, limit: float, where: str, info: dict | None = None) -> EvalResult:
        return EvalResult(status=Status.TIMEOUT, device=work.req.device,
                          reason=f"no result within {limit:g} s ({where}); its worker was killed",
                          provenance={"cluster": dict(info or {})})

    def _next_deadline(self, now: float) -> float:
        deadlines = [now + self._rescan_s]
        deadlines += [f.submitted_at + self._precheck_timeout_s for f in self._flights.values()
                      if f.stage == "precheck"]
        for slots in self._slots.values():
            for s in slots:
                if s.ready_at is None:
                    deadlines.append(s.created_at + self._start_timeout_s)
                elif s.head_started is not None:
                    deadlines.append(s.head_started + self._timeout_s)
        return min(deadlines)

    def _check_starvation(self, now: float) -> None:
        have = _per_class(self._desired)
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
            raise HardwareUnavailable([cls], {c: n for c, n in have.items()}, keys=waiting,
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
