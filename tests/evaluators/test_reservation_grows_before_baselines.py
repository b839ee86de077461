"""On a GPU shared by several evaluations, an evaluation reserves its verification's share of the device's memory
before its reference first runs, and grows by its baselines' share only once it is verified, before their children
are built (``evaluators.device_memory.phase_bytes``). A verification alone reserves everything at once and never
grows. The CPU stands in for the GPU here: the pipeline is told the device's memory is shared."""
from __future__ import annotations

import pytest

from evaluators import device_memory, pipeline, timing_phase
from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy
from evaluators.result import Status
from evaluators.warm import POOL
from search.protocol import DeviceSlot, Reservation
from tests.evaluators.test_timing_slot_and_stages import HONEST, PROBLEM, WRONG

GB = 1 << 30


@pytest.fixture(autouse=True)
def shared_device(monkeypatch):
    monkeypatch.setattr(pipeline, "_shares_device_memory", lambda req, slot: True)
    monkeypatch.setattr(device_memory, "capacity_bytes", lambda device: 100 * GB)
    yield
    POOL.retain(False)
    POOL.close()


class RecordingSlot(DeviceSlot):
    def __init__(self, events: list) -> None:
        super().__init__(2)
        self.events = events

    def reserve(self, nbytes, capacity, grow=0):
        self.events.append(("reserve", nbytes, grow))
        return super().reserve(nbytes, capacity, grow)


def _req(tmp_path, cache_dir, source: str, mode: str) -> EvalRequest:
    problem = tmp_path / "double.py"
    problem.write_text(PROBLEM)
    return EvalRequest(problem_path=str(problem), candidate_source=source, device="cpu", mode=mode,
                       verify=VerifyPolicy(seed=5), cache_dir=str(cache_dir),
                       timing=TimingPolicy(baselines=("eager",), time_cap_s=0.3, min_samples=8))


def _record_grow_and_baselines(monkeypatch, events: list) -> None:
    grow = Reservation.grow

    def recorded_grow(self):
        events.append(("grow", self.nbytes, self.growth))
        grow(self)
    monkeypatch.setattr(Reservation, "grow", recorded_grow)
    children = timing_phase.baseline_children

    def recorded_children(*args, **kwargs):
        events.append(("baselines",))
        return children(*args, **kwargs)
    monkeypatch.setattr(pipeline, "baseline_children", recorded_children)


def test_a_bench_grows_its_reservation_once_verified_and_before_its_baselines(tmp_path, kswarm_cache_dir,
                                                                              monkeypatch):
    events: list = []
    _record_grow_and_baselines(monkeypatch, events)
    req = _req(tmp_path, kswarm_cache_dir, HONEST, "bench")
    result = evaluate(req, timing_slot=RecordingSlot(events))
    assert result.status is Status.ACCEPTED, result.reason
    now, later = device_memory.phase_bytes(device_memory.on_meta(req.problem_path, req.scale), 100 * GB)
    assert events == [("reserve", now, later), ("grow", now, later), ("baselines",)]
    assert "wait_memory" in result.stage_s


def test_a_candidate_rejected_in_verification_never_grows(tmp_path, kswarm_cache_dir, monkeypatch):
    events: list = []
    _record_grow_and_baselines(monkeypatch, events)
    slot = RecordingSlot(events)
    result = evaluate(_req(tmp_path, kswarm_cache_dir, WRONG, "bench"), timing_slot=slot)
    assert result.status is Status.MISMATCH, result.reason
    assert [e[0] for e in events] == ["reserve"]
    assert not slot.would_wait(100 * GB, 100 * GB)      # its reservation and growth room are given back


def test_a_verification_reserves_everything_at_once(tmp_path, kswarm_cache_dir, monkeypatch):
    events: list = []
    _record_grow_and_baselines(monkeypatch, events)
    req = _req(tmp_path, kswarm_cache_dir, HONEST, "verify")
    result = evaluate(req, timing_slot=RecordingSlot(events))
    assert result.status is Status.ACCEPTED, result.reason
    need = device_memory.need_bytes(device_memory.on_meta(req.problem_path, req.scale), 100 * GB)
    assert events == [("reserve", need, 0)]
