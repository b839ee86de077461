"""Before a candidate takes time on another device, the cheap checks verify it on the CPU when it runs there
unchanged: a wrong one is rejected without the device, a right one goes on, and device-bound code is left to its
device."""
from pathlib import Path

import pytest

from evaluators.pipeline import precheck
from evaluators.policy import EvalRequest
from evaluators.result import Status

FIX = Path(__file__).resolve().parents[1] / "fixtures"
PROBLEM = str(FIX / "problems" / "row_softmax.py")
WRONG = (FIX / "candidates" / "adversarial" / "c03_unstable_softmax.py").read_text()
RIGHT = (FIX / "candidates" / "honest" / "stable_softmax_manual.py").read_text()


def req(source: str, device: str, cache: Path) -> EvalRequest:
    return EvalRequest(problem_path=PROBLEM, candidate_source=source, device=device, cache_dir=str(cache))


def test_a_wrong_portable_candidate_is_rejected_on_the_cpu(kswarm_cache_dir: Path) -> None:
    r = precheck(req(WRONG, "cuda", kswarm_cache_dir))
    assert r is not None and r.status is Status.DOMAIN_MISMATCH
    assert r.reason.startswith("on the CPU, before any cuda time:")
    assert r.device == "cpu" and r.policy["checked_on"] == "cpu" and r.policy["target_device"] == "cuda"


def test_a_right_portable_candidate_goes_on_to_its_device(kswarm_cache_dir: Path) -> None:
    assert precheck(req(RIGHT, "cuda", kswarm_cache_dir)) is None


@pytest.mark.parametrize("marker", ["import triton\n", "# torch.compile(self)\n", "x = 1  # .cuda()\n"])
def test_device_bound_code_is_left_to_its_device(kswarm_cache_dir: Path, marker: str) -> None:
    # the wrong candidate would be rejected if it ran on the CPU; naming device-bound machinery skips that run
    assert precheck(req(marker + WRONG, "cuda", kswarm_cache_dir)) is None


def test_on_the_cpu_the_cheap_checks_stay_static(kswarm_cache_dir: Path) -> None:
    # the CPU evaluation itself verifies; its precheck does not run the candidate twice
    assert precheck(req(WRONG, "cpu", kswarm_cache_dir)) is None
    assert precheck(req("import os\nos.system('true')\n" + RIGHT, "cuda", kswarm_cache_dir)).status \
        is Status.STATIC_VIOLATION
