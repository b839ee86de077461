"""The contract with the engine: ``evaluate(req, timing_slot=...)`` holds the slot around the timing phase only
(never for a verification, never for a candidate rejected before timing), releases it whatever happens, and every
result says how long each stage it reached took (``stage_s``), also after a JSON round trip."""
from __future__ import annotations

import contextlib
import time

import pytest

from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy
from evaluators.result import EvalResult, Status
from evaluators.warm import POOL

PROBLEM = """\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return x * 2.0


def get_inputs():
    return [torch.randn(2048)]


def get_init_inputs():
    return []
"""
HONEST = PROBLEM.replace("class Model(", "class ModelNew(").replace("x * 2.0", "x + x")
WRONG = PROBLEM.replace("class Model(", "class ModelNew(").replace("x * 2.0", "x * 3.0")


@pytest.fixture(autouse=True)
def no_spares_left():
    """An evaluation given a timing slot keeps warm children for the next one; they end with each test here."""
    yield
    POOL.retain(False)
    POOL.close()


class Slot:
    """A timing slot that records when it was held: the stages the pipeline had reached on entry and on exit."""

    def __init__(self) -> None:
        self.events: list[str] = []

    @contextlib.contextmanager
    def hold(self):
        self.events.append("enter")
        try:
            yield
        finally:
            self.events.append("exit")


def _req(tmp_path, cache_dir, source: str, mode: str = "bench") -> EvalRequest:
    problem = tmp_path / "double.py"
    problem.write_text(PROBLEM)
    return EvalRequest(problem_path=str(problem), candidate_source=source, device="cpu", mode=mode,
                       verify=VerifyPolicy(seed=5), cache_dir=str(cache_dir),
                       timing=TimingPolicy(baselines=("eager",), time_cap_s=0.3, min_samples=8))


def test_a_bench_holds_the_slot_once_around_timing_and_reports_every_stage(tmp_path, kswarm_cache_dir):
    slot = Slot()
    result = evaluate(_req(tmp_path, kswarm_cache_dir, HONEST), timing_slot=slot.hold())
    assert result.status is Status.ACCEPTED, result.reason
    assert slot.events == ["enter", "exit"]
    assert {"static", "spawn", "build", "verify", "time", "baseline", "timed_calls"} <= set(result.stage_s)
    assert all(v >= 0 for v in result.stage_s.values())
    # the timed calls' own seconds lie inside the timing stage's wall time
    assert 0 < result.stage_s["timed_calls"] <= result.stage_s["time"]
    again = EvalResult.from_dict(result.to_dict())
    assert again.stage_s == result.stage_s


def test_a_verification_never_takes_the_slot(tmp_path, kswarm_cache_dir):
    slot = Slot()
    result = evaluate(_req(tmp_path, kswarm_cache_dir, HONEST, mode="verify"), timing_slot=slot.hold())
    assert result.status is Status.ACCEPTED, result.reason
    assert slot.events == []
    assert "time" not in result.stage_s and "baseline" not in result.stage_s
    assert {"static", "spawn", "build", "verify"} <= set(result.stage_s)


def test_a_candidate_rejected_before_timing_never_takes_the_slot(tmp_path, kswarm_cache_dir):
    slot = Slot()
    result = evaluate(_req(tmp_path, kswarm_cache_dir, WRONG), timing_slot=slot.hold())
    assert result.status is Status.MISMATCH, result.reason
    assert slot.events == []
    assert "verify" in result.stage_s and "time" not in result.stage_s


@pytest.mark.parametrize("source", ["import os\nos._exit(0)\n" + HONEST])
def test_a_static_rejection_has_its_stage_too(tmp_path, kswarm_cache_dir, source):
    result = evaluate(_req(tmp_path, kswarm_cache_dir, source))
    assert result.status is Status.STATIC_VIOLATION
    assert set(result.stage_s) == {"static"}


COUNTING = HONEST.replace("    def forward(self, x):\n        return x + x", """\
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x + x if self.calls < 16 else x * 3.0""")


def test_the_slot_is_released_when_timing_rejects(tmp_path, kswarm_cache_dir):
    """Honest for the checks, wrong once timed: the rejection happens with the slot held, and it is let go."""
    assert "self.calls" in COUNTING
    slot = Slot()
    result = evaluate(_req(tmp_path, kswarm_cache_dir, COUNTING), timing_slot=slot.hold())
    assert result.status is Status.TIMED_MISMATCH, result.reason
    assert slot.events == ["enter", "exit"]
    assert "time" in result.stage_s


class Recorded:
    """The engine's DeviceSlot, recording which hold was taken in which order."""

    def __init__(self) -> None:
        from search.protocol import DeviceSlot
        self.inner = DeviceSlot()
        self.events: list[str] = []

    @contextlib.contextmanager
    def shared(self):
        with self.inner.shared():
            self.events.append("shared")
            yield
        self.events.append("shared out")

    def __enter__(self):
        self.inner.__enter__()
        self.events.append("alone")
        return self

    def __exit__(self, *exc):
        self.events.append("alone out")
        self.inner.__exit__(*exc)


def test_with_a_device_slot_verification_shares_the_device_timing_and_profile_have_it_alone(tmp_path,
                                                                                         kswarm_cache_dir):
    slot = Recorded()
    result = evaluate(_req(tmp_path, kswarm_cache_dir, HONEST), timing_slot=slot)
    assert result.status is Status.ACCEPTED, result.reason
    # each verification call's device work holds the device shared (the reference's and the candidate's call, then
    # the comparison), every shared hold is left before the device is asked for alone, and all is let go at the end
    assert slot.events[-2:] == ["alone", "alone out"]
    shared = slot.events[:-2]
    assert shared == ["shared", "shared out"] * (len(shared) // 2) and len(shared) // 2 >= 2 * VerifyPolicy().trials
    assert slot.inner.holders() == (0, False)
    # the profile came from the judged child: no second spawn or build, and it is in the result
    assert "profile" in result.stage_s
    assert result.profile.get("top_ops") and result.profile.get("profiled_calls") == 5
    assert "profile_error" not in result.profile and "roofline" in result.profile


def test_a_verification_holds_the_device_slot_shared_only(tmp_path, kswarm_cache_dir):
    slot = Recorded()
    result = evaluate(_req(tmp_path, kswarm_cache_dir, HONEST, mode="verify"), timing_slot=slot)
    assert result.status is Status.ACCEPTED, result.reason
    assert slot.events == ["shared", "shared out"] * (len(slot.events) // 2) and "profile" not in result.stage_s
    assert "alone" not in slot.events


class Asking(Recorded):
    """Records when a shared hold is asked for, before it is granted."""

    @contextlib.contextmanager
    def shared(self):
        self.events.append("asked shared")
        with super().shared():
            yield


def _evaluate_until(request, slot: Recorded, event: str, got: list):
    """``evaluate(request)`` started on a thread, returned once ``event`` is among the slot's events (or the
    evaluation ended, or 300 s passed); its result is appended to ``got``."""
    import threading

    worker = threading.Thread(target=lambda: got.append(evaluate(request, timing_slot=slot)))
    worker.start()
    deadline = time.monotonic() + 300
    while event not in slot.events and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return worker


def test_a_build_holds_nothing_so_it_overlaps_another_candidates_timing(tmp_path, kswarm_cache_dir):
    """While another candidate holds the device alone (timing), this candidate is built and comes to ask for the
    shared hold for its verification: the build waited for nothing. Its verification waits for the timing."""
    slot = Asking()
    slot.inner.__enter__()                   # another candidate's timing
    got: list = []
    try:
        worker = _evaluate_until(_req(tmp_path, kswarm_cache_dir, HONEST), slot, "asked shared", got)
        assert slot.events == ["asked shared"], "the build did not finish while the device was held alone"
    finally:
        slot.inner.__exit__(None, None, None)
        worker.join(timeout=300)
    assert got and got[0].status is Status.ACCEPTED, got and got[0].reason
    assert slot.events[:3] == ["asked shared", "shared", "shared out"]
    assert slot.events[-2:] == ["alone", "alone out"]
    assert got[0].stage_s["build"] > 0


def test_a_timing_waits_for_one_verification_call_not_for_the_whole_verification(tmp_path, kswarm_cache_dir):
    """Another candidate asks for the device alone while this one verifies: it gets the device as soon as the call
    under way has left its shared hold, and this verification goes on after it."""
    slot = Recorded()
    got: list = []
    worker = _evaluate_until(_req(tmp_path, kswarm_cache_dir, HONEST), slot, "shared", got)
    try:
        with slot.inner:                       # the other candidate's timing
            slot.events.append("other timing")
            time.sleep(0.2)
    finally:
        worker.join(timeout=300)
    assert got and got[0].status is Status.ACCEPTED, got and got[0].reason
    other = slot.events.index("other timing")
    assert "shared" in slot.events[other + 1:], "the verification held the device until it was over"
