"""The evaluator actors of a dispatcher: one per device of each target class on the alive nodes.

The pool follows the cluster: it spawns an actor for each device that has none (a node joined, an actor was
replaced) and retires the actors of nodes that left. It knows nothing of the work: a slot carries the device it
serves, and what runs there is the scheduler's business.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import time
from typing import Any

import ray

from cluster import actors, hardware
from search.protocol import NoDevice

logger = logging.getLogger(__name__)


class HardwareUnavailable(NoDevice):
    """No alive node offers these hardware classes. ``keys`` are the submitted keys dropped undelivered."""

    def __init__(self, missing: list[str], available: dict[str, int], keys: list[str] = (), waited_s: float = 0.0):
        self.missing, self.available, self.keys = list(missing), dict(available), list(keys)
        have = ", ".join(f"{c} ({n})" for c, n in sorted(available.items())) or "none"
        super().__init__(
            f"no node of the Ray cluster offers hardware class {', '.join(missing)}"
            f"{f' (waited {waited_s:g} s)' if waited_s else ''}; classes available: {have}. Start one with "
            f"`kswarm node start --address <head>` on such a machine, or drop the target"
            + (f"; {len(self.keys)} submitted evaluations were not run" if self.keys else ""))


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


def per_class(devices: dict[tuple[str, str], int]) -> dict[str, int]:
    out: collections.Counter[str] = collections.Counter()
    for (_, cls), n in devices.items():
        out[cls] += n
    return dict(out)


def wait_for_hardware(targets: list[str], wait_s: float) -> None:
    """Return once every target class has a device on an alive node; raise ``HardwareUnavailable`` after ``wait_s``."""
    start = time.monotonic()
    while True:
        devices = alive_hardware(None)
        have = per_class(devices)
        missing = [c for c in targets if have.get(c, 0) == 0]
        if not missing:
            for c in targets:
                logger.info("hardware %s: %d device(s) on %d node(s)", c, have[c],
                            sum(1 for (_, k) in devices if k == c))
            return
        waited = time.monotonic() - start
        if waited >= wait_s:
            raise HardwareUnavailable(missing, have, waited_s=round(waited, 1))
        logger.warning("no node offers %s yet; waiting up to %g s", ", ".join(missing), wait_s)
        time.sleep(min(2.0, wait_s - waited))


@dataclasses.dataclass(eq=False)
class Slot:
    """One evaluator actor on one device. ``device_id`` names the device, not the actor: a replacement actor on
    the same device keeps it (``<class>:<node id prefix>:<index>``)."""

    hw_class: str
    node_id: str
    device_id: str
    handle: Any
    ready_ref: Any
    created_at: float
    ready_at: float | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    retired: bool = False


class EvaluatorPool:
    """Evaluator actors for ``targets``, matched to the devices of the alive nodes.

    A node whose actors fail to start more than ``max_start_failures`` times in a row gets no more.
    """

    def __init__(self, targets: list[str], evaluate: actors.FunctionRef, max_start_failures: int = 2,
                 start_timeout_s: float = 300.0, slots: dict[str, int] | None = None,
                 verify_slots: dict[str, int] | None = None):
        self.targets = list(targets)
        self._slots = dict(slots or {})              # evaluations an actor holds at once
        self._verify = dict(verify_slots or {})      # of those, how many verify at once
        self._evaluate = evaluate
        self._max_start_failures, self._start_timeout_s = max_start_failures, start_timeout_s
        self.slots: dict[str, list[Slot]] = {c: [] for c in self.targets}
        self.starting: dict[Any, Slot] = {}      # ready ref -> slot whose actor has not answered yet
        self._start_failures: collections.Counter[str] = collections.Counter()
        self._devices: dict[tuple[str, str], int] = {}

    def capacity(self) -> dict[str, int]:
        """Devices per target class on alive nodes, as last seen."""
        have = per_class(self._devices)
        return {c: have.get(c, 0) for c in self.targets}

    def reconcile(self) -> list[Slot]:
        """Spawn actors for devices without one; retire those of nodes gone and return them (work still inside)."""
        self._devices = {k: n for k, n in alive_hardware(self.targets).items()
                         if self._start_failures[k[0]] <= self._max_start_failures}
        gone = []
        for cls, slots in self.slots.items():
            for slot in [s for s in slots if (s.node_id, cls) not in self._devices]:
                logger.warning("node %s no longer offers %s; retiring its evaluator", slot.node_id[:8], cls)
                self.retire(slot)
                gone.append(slot)
            live = collections.Counter(s.node_id for s in slots)
            for (node, c), n in self._devices.items():
                for _ in range(n - live[node] if c == cls else 0):
                    self._spawn(cls, node)
        return gone

    def _spawn(self, cls: str, node_id: str) -> None:
        handle = actors.spawn_evaluator(cls, self._evaluate, node_id=node_id, slots=self._slots.get(cls, 1),
                                         verify_slots=self._verify.get(cls))
        used = {s.device_id for s in self.slots[cls] if s.node_id == node_id}
        index = next(i for i in range(len(used) + 1) if f"{cls}:{node_id[:8]}:{i}" not in used)
        slot = Slot(hw_class=cls, node_id=node_id, device_id=f"{cls}:{node_id[:8]}:{index}", handle=handle,
                    ready_ref=handle.ready.remote(), created_at=time.monotonic())
        self.slots[cls].append(slot)
        self.starting[slot.ready_ref] = slot
        logger.debug("spawned %s evaluator on node %s", cls, node_id[:8])

    def retire(self, slot: Slot) -> None:
        """Kill the slot's actor; its work is the caller's to send again."""
        if slot.retired:
            return
        slot.retired = True
        self.slots[slot.hw_class].remove(slot)
        self.starting.pop(slot.ready_ref, None)
        try:
            ray.kill(slot.handle, no_restart=True)
        except Exception as exc:  # the actor is already gone: nothing to kill
            logger.debug("kill %s evaluator: %s", slot.hw_class, exc)

    def on_ready(self, ref: Any, now: float) -> Slot | None:
        """Handle a slot's ready answer. A slot whose actor could not start is retired and returned."""
        slot = self.starting.pop(ref)
        try:
            slot.info = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._start_failures[slot.node_id] += 1
            logger.warning("%s evaluator on node %s failed to start: %s", slot.hw_class, slot.node_id[:8],
                           str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            self.retire(slot)
            return slot
        self._start_failures[slot.node_id] = 0
        self.mark_ready(slot, now)
        return None

    def mark_ready(self, slot: Slot, now: float) -> None:
        if slot.ready_at is None:
            slot.ready_at = now

    def stale_starts(self, now: float) -> list[Slot]:
        """Slots not ready within the start timeout, retired."""
        stale = [s for slots in self.slots.values() for s in slots
                 if s.ready_at is None and now - s.created_at > self._start_timeout_s]
        for slot in stale:
            self._start_failures[slot.node_id] += 1
            logger.warning("%s evaluator on node %s not ready after %g s; replacing it", slot.hw_class,
                           slot.node_id[:8], self._start_timeout_s)
            self.retire(slot)
        return stale

    def next_start_deadline(self) -> float | None:
        times = [s.created_at + self._start_timeout_s for slots in self.slots.values() for s in slots
                 if s.ready_at is None]
        return min(times) if times else None

    def shutdown(self) -> None:
        for slots in list(self.slots.values()):
            for slot in list(slots):
                self.retire(slot)
