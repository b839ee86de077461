"""An evaluation past its time limit, or one that poisons the device, costs its actor: it is never reused."""
import pytest

from cluster.dispatch import Dispatcher, poisons_device
from evaluators.result import EvalResult, Status
from tests.cluster._evals import drain, request

pytestmark = pytest.mark.ray


def test_timeout_kills_the_actor_and_a_fresh_one_goes_on(two_nodes):
    # the limit applies to every evaluation, and the first on a fresh actor also pays for its start-up
    d = Dispatcher(["fakegpu"], "tests.cluster._evals:scripted", timeout_s=10.0, rescan_s=0.5)
    try:
        d.submit("before", request("sleep 0.01"), "fakegpu")
        before = drain(d)
        d.submit("hangs", request("hang"), "fakegpu")
        d.submit("after", request("sleep 0.01"), "fakegpu")
        got = {k: r for k, _, r in before + drain(d, limit_s=60)}
    finally:
        d.shutdown()
    assert got["hangs"].status is Status.TIMEOUT
    assert "no result within 10 s" in got["hangs"].reason
    assert got["after"].status is Status.ACCEPTED
    assert got["after"].provenance["pid"] != got["before"].provenance["pid"]


def test_cuda_crash_replaces_the_actor(two_nodes):
    d = Dispatcher(["fakegpu"], "tests.cluster._evals:scripted", rescan_s=0.5)
    try:
        d.submit("before", request("sleep 0.01"), "fakegpu")
        before = drain(d)
        d.submit("poison", request("crash-cuda"), "fakegpu")
        poisoned = drain(d)
        d.submit("after", request("sleep 0.01"), "fakegpu")
        got = {k: r for k, _, r in before + poisoned + drain(d)}
    finally:
        d.shutdown()
    assert got["poison"].status is Status.CRASHED
    assert got["poison"].provenance["cluster"]["pid"] == got["before"].provenance["pid"]
    assert got["after"].status is Status.ACCEPTED
    assert got["after"].provenance["pid"] != got["before"].provenance["pid"]


def test_only_the_flag_poisons_never_the_reason_text():
    assert poisons_device(EvalResult(Status.CRASHED, "killed by SIGSEGV", device_poisoned=True))
    # a candidate's own CUDA fault is its child's, whose context ends with it: the evaluator's device is fine
    assert not poisons_device(EvalResult(Status.CRASHED, "CUDA error: unspecified launch failure"))
    assert not poisons_device(EvalResult(Status.MISMATCH, "CUDA output differs"))
    again = EvalResult.from_dict(EvalResult(Status.CRASHED, "x", device_poisoned=True).to_dict())
    assert again.device_poisoned is True
