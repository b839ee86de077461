"""On a GPU shared by several evaluations, an evaluation that runs out of device memory is evaluated again alone,
and the evaluator remembers it per problem: later evaluations of the problem reserve more, and where the problem's
own side (a baseline, the reference) ran out of memory even alone, they are not run alone again (each such run
drains the device for minutes and ended the same way on the H200). The CPU stands in for the GPU: the pipeline is
told the device's memory is shared, and the evaluation under the reservation answers as scripted."""
from __future__ import annotations

import pytest

from evaluators import device_memory, pipeline
from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy
from evaluators.result import EvalResult, Status
from evaluators.warm import POOL
from search.protocol import DeviceSlot
from tests.evaluators.test_timing_slot_and_stages import HONEST, PROBLEM

GB = 1 << 30
CAP = 100 * GB
OOM_BASELINE = ("the eager baseline failed: timed call 1: OutOfMemoryError: CUDA out of memory. Tried to allocate "
                "8.00 GiB.")
OOM_TRIAL = "trial 4: OutOfMemoryError: CUDA out of memory. Tried to allocate 8.00 GiB."


@pytest.fixture(autouse=True)
def shared_device(monkeypatch):
    monkeypatch.setattr(pipeline, "_shares_device_memory", lambda req, slot: True)
    monkeypatch.setattr(device_memory, "capacity_bytes", lambda device: CAP)
    monkeypatch.setattr(device_memory, "_GROWTH", {})
    monkeypatch.setattr(device_memory, "_FAILED_ALONE", {})
    yield
    POOL.retain(False)
    POOL.close()


class Script:
    """Stands for the evaluation under its reservation: answers the scripted verdicts in turn and records the
    memory each run held (bytes now + growth declared)."""

    def __init__(self, *answers: tuple[Status, str]) -> None:
        self.answers = list(answers)
        self.held: list[int] = []

    def __call__(self, req, stage, timing_slot, flags, reservation):
        self.held.append(reservation.nbytes + reservation.growth)
        status, reason = self.answers.pop(0)
        return EvalResult(status=status, reason=reason, device=req.device)


def _req(tmp_path, name: str) -> EvalRequest:
    problem = tmp_path / f"{name}.py"
    problem.write_text(PROBLEM)
    return EvalRequest(problem_path=str(problem), candidate_source=HONEST, device="cpu", mode="bench",
                       verify=VerifyPolicy(seed=5), timing=TimingPolicy(baselines=("eager",)))


def _first_need(req: EvalRequest) -> int:
    now, later = device_memory.phase_bytes(device_memory.on_meta(req.problem_path, req.scale), CAP)
    return now + later


def test_a_problem_that_ran_out_alone_is_not_run_alone_again_and_reserves_more(tmp_path, monkeypatch):
    slot = DeviceSlot(2)
    req = _req(tmp_path, "big")
    script = Script((Status.BASELINE_ERROR, OOM_BASELINE), (Status.BASELINE_ERROR, OOM_BASELINE))
    monkeypatch.setattr(pipeline, "_held_or_out_of_memory", script)
    first = evaluate(req, timing_slot=slot)
    assert first.status is Status.BASELINE_ERROR
    assert first.provenance["evaluated_alone_after"].startswith("the eager baseline failed")
    need = _first_need(req)
    assert script.held == [need, CAP]                  # shared, then the whole device
    assert device_memory.failed_alone(req.problem_path, req.scale, req.device) is not None

    # the next candidate of the problem reserves 1.5 times as much, and is not run alone after running out
    script = Script((Status.BASELINE_ERROR, OOM_BASELINE))
    monkeypatch.setattr(pipeline, "_held_or_out_of_memory", script)
    second = evaluate(req, timing_slot=slot)
    assert second.status is Status.BASELINE_ERROR
    assert "not evaluated again alone" in second.reason and "smaller scale" in second.reason
    assert "not_evaluated_alone" in second.provenance and "evaluated_alone_after" not in second.provenance
    assert script.held == [pytest.approx(1.5 * need, rel=1e-6)]

    # another problem is not affected
    other = _req(tmp_path, "small")
    script = Script((Status.ACCEPTED, "passed"))
    monkeypatch.setattr(pipeline, "_held_or_out_of_memory", script)
    assert evaluate(other, timing_slot=slot).status is Status.ACCEPTED
    assert script.held == [_first_need(other)]
    assert not slot.would_wait(CAP, CAP)               # every reservation given back


def test_a_candidate_that_runs_out_alone_leaves_the_problem_free_to_run_alone(tmp_path, monkeypatch):
    """Running out in the candidate's own trials, even alone, says nothing of the problem: a later candidate that
    runs out while shared still gets its run alone (and fits, here)."""
    slot = DeviceSlot(2)
    req = _req(tmp_path, "big")
    script = Script((Status.RUNTIME_ERROR, OOM_TRIAL), (Status.RUNTIME_ERROR, OOM_TRIAL))
    monkeypatch.setattr(pipeline, "_held_or_out_of_memory", script)
    assert evaluate(req, timing_slot=slot).status is Status.RUNTIME_ERROR
    assert device_memory.failed_alone(req.problem_path, req.scale, req.device) is None
    script = Script((Status.RUNTIME_ERROR, OOM_TRIAL), (Status.ACCEPTED, "passed"))
    monkeypatch.setattr(pipeline, "_held_or_out_of_memory", script)
    again = evaluate(req, timing_slot=slot)
    assert again.status is Status.ACCEPTED and "evaluated_alone_after" in again.provenance
    assert script.held[1] == CAP


def test_the_growth_stops_at_its_ceiling():
    for _ in range(10):
        factor = device_memory.ran_out_shared("p.py", "default", "cuda")
    assert factor == device_memory.MAX_GROWTH == device_memory.growth("p.py", "default", "cuda")
    assert device_memory.growth("q.py", "default", "cuda") == 1.0


def test_the_evaluators_own_reference_running_out_alone_counts_as_the_problems(tmp_path, monkeypatch):
    """The evaluator's own reference run is the problem's side too: told apart by the result's provenance, not by
    its reason text."""
    def reference_out_of_memory(*args):
        raise pipeline.torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
    monkeypatch.setattr(pipeline, "_evaluate_held", reference_out_of_memory)
    monkeypatch.setattr(pipeline.torch.cuda, "empty_cache", lambda: None)
    req = _req(tmp_path, "big")
    result = evaluate(req, timing_slot=DeviceSlot(2))
    assert result.status is Status.RUNTIME_ERROR and "evaluated_alone_after" in result.provenance
    assert result.provenance["out_of_memory_in"] == "evaluator"
    assert device_memory.failed_alone(req.problem_path, req.scale, req.device).startswith("the evaluator ran out")
