"""A CUDA out-of-memory verdict reached while other evaluations shared the device is the sharing's, not the
candidate's: the evaluation runs again with the device's memory to itself, and that verdict stands. The flow is
driven here with the evaluation's body replaced (no GPU on this machine); the H200 campaign exercises it for real."""
from __future__ import annotations

import pytest

from evaluators import device_memory, pipeline
from evaluators.policy import EvalRequest
from evaluators.result import EvalResult, Status
from evaluators.warm import POOL
from search.protocol import DeviceSlot

CAPACITY = 1 << 40
OOM = "trial 3: OutOfMemoryError: CUDA out of memory. Tried to allocate 4.00 GiB."


@pytest.fixture(autouse=True)
def no_spares_left():
    """An evaluation given a device slot keeps warm children for the next one (``POOL.retain``); that must not
    outlive these tests, or later tests' evaluations would take spares made for other limits."""
    yield
    POOL.retain(False)
    POOL.close()


@pytest.fixture
def shared_cuda(monkeypatch):
    monkeypatch.setattr(pipeline.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(device_memory, "capacity_bytes", lambda device: CAPACITY)
    monkeypatch.setattr(device_memory, "data_bytes", lambda *a: 10)
    monkeypatch.setattr(pipeline, "_static", lambda req: ((), None))
    # what the evaluator remembers of problems that ran out of memory starts afresh in each test
    monkeypatch.setattr(device_memory, "_GROWTH", {})
    monkeypatch.setattr(device_memory, "_FAILED_ALONE", {})


def _req() -> EvalRequest:
    return EvalRequest(problem_path="p.py", candidate_source="", device="cuda", mode="bench")


def test_the_second_run_has_the_memory_alone_and_its_verdict_stands(shared_cuda, monkeypatch):
    slot = DeviceSlot()
    seen = []

    def body(req, stage, timing_slot, flags, cpu_work, reservation):
        seen.append(slot._reserved)
        if len(seen) == 1:
            return EvalResult(Status.RUNTIME_ERROR, OOM)
        return EvalResult(Status.ACCEPTED, "passed")

    monkeypatch.setattr(pipeline, "_evaluate_held", body)
    result = pipeline.evaluate(_req(), timing_slot=slot)
    assert result.status is Status.ACCEPTED
    assert seen[0] < CAPACITY and seen[1] == CAPACITY          # the first shared, the second with the whole capacity
    assert result.provenance["evaluated_alone_after"].startswith("trial 3: OutOfMemoryError")
    assert slot._reserved == 0


def test_an_out_of_memory_alone_is_the_verdict_and_other_failures_are_not_run_again(shared_cuda, monkeypatch):
    calls = []

    def body(req, stage, timing_slot, flags, cpu_work, reservation):
        calls.append(1)
        return EvalResult(Status.RUNTIME_ERROR, OOM)

    monkeypatch.setattr(pipeline, "_evaluate_held", body)
    result = pipeline.evaluate(_req(), timing_slot=DeviceSlot())
    assert result.status is Status.RUNTIME_ERROR and len(calls) == 2       # once shared, once alone: it stands

    calls.clear()
    monkeypatch.setattr(pipeline, "_evaluate_held",
                        lambda *a: calls.append(1) or EvalResult(Status.MISMATCH, "trial 1: output 0 differs"))
    assert pipeline.evaluate(_req(), timing_slot=DeviceSlot()).status is Status.MISMATCH and len(calls) == 1


def test_the_evaluators_own_out_of_memory_is_a_verdict_not_a_crash(shared_cuda, monkeypatch):
    calls = []

    def body(req, stage, timing_slot, flags, cpu_work, reservation):
        calls.append(1)
        if len(calls) == 1:
            raise pipeline.torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return EvalResult(Status.ACCEPTED, "passed")

    monkeypatch.setattr(pipeline, "_evaluate_held", body)
    monkeypatch.setattr(pipeline.torch.cuda, "empty_cache", lambda: None)
    result = pipeline.evaluate(_req(), timing_slot=DeviceSlot())
    assert result.status is Status.ACCEPTED and "evaluator ran out of device memory" in \
        result.provenance["evaluated_alone_after"]


def test_without_a_shared_slot_nothing_runs_again(shared_cuda, monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline, "_evaluate_held",
                        lambda *a: calls.append(1) or EvalResult(Status.RUNTIME_ERROR, OOM))
    assert pipeline.evaluate(_req()).status is Status.RUNTIME_ERROR and len(calls) == 1
