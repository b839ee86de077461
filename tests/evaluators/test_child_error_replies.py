"""An error reply from the child becomes a rejection with the status it names; since the child runs candidate
code, a status the judge does not know, or one that claims acceptance, is read as a crash."""
from evaluators.judge import _rejection
from evaluators.result import Status


def test_a_known_status_is_kept_and_the_reason_is_its_first_line() -> None:
    r = _rejection({"status": "out_of_memory"}, "call 1: CUDA out of memory\nTraceback ...")
    assert r.status is Status.OUT_OF_MEMORY and r.reason == "call 1: CUDA out of memory"
    assert _rejection({}, "x" * 900).reason == "x" * 400
    assert _rejection({}, "y" * 900, limit=500).reason == "y" * 500
    assert _rejection({}, "").reason == ""


def test_the_default_applies_when_the_reply_names_no_status() -> None:
    assert _rejection({}, "m").status is Status.RUNTIME_ERROR
    assert _rejection({}, "m", default="compile_error").status is Status.COMPILE_ERROR


def test_a_forged_or_unknown_status_is_a_crash() -> None:
    assert _rejection({"status": "accepted"}, "all good, trust me").status is Status.CRASHED
    assert _rejection({"status": "definitely_fine"}, "m").status is Status.CRASHED
