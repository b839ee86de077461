"""Dispatch of evaluations to evaluator actors pinned to hardware classes: the Ray adapter of ``search.scheduler``.

Contract of ``Dispatcher`` (the scheduler's, see ``search.scheduler``, on Ray):
- every submitted key is delivered by ``poll`` exactly once, with an ``EvalResult``, unless it is withdrawn or its
  hardware class has no node for longer than ``wait_s`` (then ``poll`` raises ``HardwareUnavailable`` naming the
  keys, which are dropped undelivered);
- the cheap checks (``precheck``) run as CPU tasks first; only a request that passes them takes device time;
- one actor per device (a threaded actor) holding up to ``verify_slots`` + ``build_ahead`` evaluations at once:
  up to ``verify_slots`` verify together, one exclusive timing slot among them, the rest build;
- work lost to a dead actor, worker or node is dispatched again, at most ``retries`` times, then delivered as
  ``crashed``;
- an evaluation running longer than ``timeout_s`` is delivered as ``timeout`` and its actor is killed and replaced;
  so is an actor whose result says the device context is poisoned;
- it is driven from one thread, the caller's: nothing happens between calls to ``submit`` and ``poll``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from cluster import actors
from cluster.pool import EvaluatorPool, HardwareUnavailable, Slot, wait_for_hardware
from evaluators import hardware
from evaluators.policy import EvalRequest
from evaluators.result import EvalResult
from search.protocol import poisoned, stamped
from search.scheduler import Scheduler

__all__ = ["Dispatcher", "HardwareUnavailable", "poisons_device"]

logger = logging.getLogger(__name__)


def poisons_device(result: EvalResult) -> bool:
    """Whether the result says the device context may be unusable, so the actor must not be reused."""
    return poisoned(result)


def _per_class(value: int | Mapping[str, int], classes: list[str], default: int) -> dict[str, int]:
    """A setting given as one int for every class, or per class (``default`` where a class is missing)."""
    return {c: int(value.get(c, default) if isinstance(value, Mapping) else value) for c in classes}


class Dispatcher:
    """Sends each request to an evaluator of its hardware class and hands back results in completion order.

    ``evaluate`` and ``precheck`` are import paths ("pkg.mod:fn") or callables, run on the workers. Ray must be
    initialised (``cluster.runtime.ensure_ray``). ``verify_slots`` (an int, or one per class) is how many
    evaluations one device's actor verifies at once; ``max_in_flight_per_actor`` is its older name. ``build_ahead``
    (an int, or one per class; default 0) is how many more it holds, building, so that a freed slot finds a built
    candidate.
    """

    def __init__(self, targets: list[str], evaluate_path: actors.FunctionRef,
                 precheck_path: actors.FunctionRef | None = None, max_in_flight_per_actor: int = 1,
                 timeout_s: float = 1800.0, retries: int = 2, wait_s: float = 0.0,
                 precheck_timeout_s: float | None = None, max_prechecks_in_flight: int | None = None,
                 precheck_num_cpus: float = 1.0, start_timeout_s: float = 300.0, rescan_s: float = 2.0,
                 verify_slots: int | Mapping[str, int] | None = None,
                 build_ahead: int | Mapping[str, int] | None = None):
        if not targets:
            raise ValueError("no target hardware classes")
        if max_in_flight_per_actor < 1:
            raise ValueError("max_in_flight_per_actor must be at least 1")
        if isinstance(evaluate_path, str):
            actors.resolve(evaluate_path)          # an unimportable path fails here, not in every actor
        if isinstance(precheck_path, str):
            actors.resolve(precheck_path)
        self.targets = list(dict.fromkeys(targets))
        slots = max_in_flight_per_actor if verify_slots is None else verify_slots
        verify, ahead = _per_class(slots, self.targets, 1), _per_class(build_ahead or 0, self.targets, 0)
        if min(verify.values()) < 1 or min(ahead.values()) < 0:
            raise ValueError(f"verify_slots must be at least 1 and build_ahead at least 0, not {verify} and {ahead}")
        self._slots = {c: verify[c] + ahead[c] for c in self.targets}     # evaluations an actor holds at once
        self._precheck, self._precheck_cpus = precheck_path, precheck_num_cpus
        self._rescan_s = rescan_s
        self._sched = Scheduler(self.targets, timeout_s=timeout_s, retries=retries, precheck=precheck_path is not None,
                                precheck_timeout_s=precheck_timeout_s, max_prechecks=max_prechecks_in_flight or 1,
                                wait_s=wait_s)
        self._offset = time.time() - time.monotonic()
        self._refs: dict[Any, int] = {}           # object ref -> ticket id
        self._by_device: dict[str, Slot] = {}
        self._last_scan = 0.0
        self._closed = False

        wait_for_hardware(self.targets, wait_s)
        self._pool = EvaluatorPool(self.targets, evaluate_path, max_start_failures=retries,
                                   start_timeout_s=start_timeout_s, slots=self._slots,
                                   verify_slots=verify)
        self._reconcile()
        if max_prechecks_in_flight is None:
            # as many as the CPUs left beside the actors that hold one, so that a check never waits in Ray's
            # queue while its time limit runs; a GPU's evaluator also builds or verifies every evaluation it holds at
            # once (a build holds no device slot), each on a core of its host, so those cores are left to it
            held = sum(n * (self._slots[c] if hardware.is_cuda_class(c) else 1)
                       for c, n in self._pool.capacity().items() if actors.actor_options(c).get("num_cpus"))
            spare = ray.cluster_resources().get("CPU", 1) - held
            self._sched.max_prechecks = max(1, int(spare // max(precheck_num_cpus, 1e-9)))

    # --- public ------------------------------------------------------------------------------------------------

    def submit(self, key: str, req: EvalRequest, hardware: str, priority: int = 0) -> None:
        """Queue ``req`` for a device of class ``hardware``; ``key`` names it in ``poll``'s results. Of the work
        waiting for a device of one class, the lowest ``priority`` starts first (ties in arrival order)."""
        if self._closed:
            raise RuntimeError("dispatcher is shut down")
        self._sched.submit(key, req, hardware, priority, time.monotonic())

    def poll(self, timeout: float | None = None) -> list[tuple[str, str, EvalResult]]:
        """Results ``(key, hardware, result)`` in completion order; waits up to ``timeout`` s for the first one.

        ``timeout=None`` waits until a result comes or nothing is pending; ``0`` only collects what is done.
        Each result's provenance gains ``schedule``: its device and the times the scheduler saw.
        """
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now - self._last_scan >= self._rescan_s:
                self._reconcile()
            self._check_starvation(now)
            self._pump(now)
            refs = list(self._refs) + list(self._pool.starting)
            if self._sched.has_output() or not self._sched.in_flight():
                wait_s = 0.0
            else:
                deadline = min(t for t in (self._sched.next_deadline(), self._pool.next_start_deadline(),
                                           now + self._rescan_s) if t is not None)
                wait_s = deadline - now if end is None else min(deadline, end) - now
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
            self._sched.expire(now)
            self._replace_doomed()
            for slot in self._pool.stale_starts(now):
                self._forget(slot, now)
                self._reconcile()
            if self._sched.has_output() or not self._sched.in_flight() or (end is not None and now >= end):
                self._pump(now)             # keep the devices busy while the caller handles these results
                return [(k, hw, stamped(r, t, self._offset)) for k, hw, r, t in self._sched.take()]

    def withdraw(self) -> list[str]:
        """Take back every submitted key that has not reached a device: queued, or still in its cheap checks (those
        run to their end unread). Work already on a device runs on and is delivered as usual; a withdrawn key never
        is.
        Returns the keys taken back, in submission order."""
        return self._sched.withdraw()

    def in_flight(self) -> set[str]:
        """Keys submitted and not yet delivered (in cheap checks, queued, or on a device)."""
        return self._sched.in_flight()

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
        self._refs.clear()

    # --- actors and devices --------------------------------------------------------------------------------------

    def _reconcile(self) -> None:
        """Match the actors to the alive nodes' devices; work on a node that left is sent again, the oldest charged."""
        self._last_scan = now = time.monotonic()
        for slot in self._pool.reconcile():
            self._forget(slot, now, why="node gone")
        for slots in self._pool.slots.values():
            for slot in slots:
                if slot.device_id not in self._by_device:
                    self._by_device[slot.device_id] = slot
                    self._sched.add_device(slot.device_id, slot.hw_class, self._slots[slot.hw_class], ready=False)

    def _forget(self, slot: Slot, now: float, why: str = "", charge_oldest: bool = True) -> None:
        if self._by_device.get(slot.device_id) is not slot:
            return
        del self._by_device[slot.device_id]
        running = self._sched.running_on(slot.device_id)
        charged = running[0].id if running and charge_oldest and why else None
        self._sched.remove_device(slot.device_id, now, charged=charged, why=why)

    def _replace_doomed(self) -> None:
        """Kill the actors the scheduler gave up (timed out, poisoned); the pool spawns fresh ones."""
        doomed = self._sched.take_doomed()
        for device, why in doomed:
            slot = self._by_device.pop(device, None)
            if slot is not None:
                logger.warning("killing and replacing the %s evaluator on node %s: %s", slot.hw_class,
                               slot.node_id[:8], why)
                self._pool.retire(slot)
        if doomed:
            self._reconcile()

    # --- the loop ------------------------------------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        for ticket in self._sched.assign(now):
            if ticket.stage == "precheck":
                ref = actors.spawn_precheck(self._precheck, ticket.request, num_cpus=self._precheck_cpus)
            else:
                ref = self._by_device[ticket.device].handle.evaluate.remote(ticket.request)
            self._refs[ref] = ticket.id

    def _handle(self, ref: Any) -> None:
        now = time.monotonic()
        if ref in self._pool.starting:
            slot = self._pool.starting[ref]
            failed = self._pool.on_ready(ref, now)
            if failed is not None:
                self._forget(failed, now)
                self._reconcile()
            else:
                self._sched.device_ready(slot.device_id)
            return
        ticket_id = self._refs.pop(ref, None)
        if ticket_id is None:
            return
        try:
            value = ray.get(ref)
        except RayTaskError as exc:     # the function itself raised: a bug in it, not a lost worker
            self._sched.raised(ticket_id, _first_line(exc.cause or exc), now)
        except RayError as exc:
            device = self._sched.lost(ticket_id, _first_line(exc), now)
            slot = self._by_device.pop(device, None) if device else None
            if slot is not None:
                self._pool.retire(slot)
                self._reconcile()
        else:
            self._sched.done(ticket_id, value, now)

    def _check_starvation(self, now: float) -> None:
        have = self._pool.capacity()
        starved = self._sched.starved(now, have)
        if starved:
            keys = [k for ks, _ in starved.values() for k in ks]
            waited = max(w for _, w in starved.values())
            raise HardwareUnavailable(sorted(starved), {c: n for c, n in have.items() if n}, keys=keys,
                                      waited_s=round(waited, 1))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
