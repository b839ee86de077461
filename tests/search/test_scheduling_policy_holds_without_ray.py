"""The scheduling policy, run in-process with a real (scripted) evaluate function and no Ray: priorities,
retries, timeouts, withdrawal, poisoned devices, verify slots sharing one timing slot, and exactly-once delivery."""
from __future__ import annotations

import collections
from pathlib import Path

import pytest
from _scripted import drain, precheck, request, scripted

from evaluators.result import EvalResult, Status
from search.local_dispatch import LocalDispatcher
from search.protocol import NoDevice, poisoned
from search.scheduler import Scheduler


def test_one_device_takes_the_lowest_priority_first() -> None:
    d = LocalDispatcher({"cpu": 1}, scripted)
    for key, prio in (("a", 2), ("b", 0), ("c", 1), ("d", 0), ("e", 2)):
        d.submit(key, request(f"# {key}\n"), "cpu", priority=prio)
    assert [k for k, _, _ in drain(d)] == ["b", "d", "c", "a", "e"]


def test_lost_work_is_retried_then_reported_crashed(tmp_path: Path) -> None:
    d = LocalDispatcher({"cpu": 1}, scripted, retries=1)
    d.submit("once", request(f"lose-once {tmp_path / 'marker'}"), "cpu")
    d.submit("always", request("lose"), "cpu")
    d.submit("fine", request(""), "cpu")
    got = {k: r for k, _, r in drain(d)}
    assert got["once"].status is Status.ACCEPTED and got["once"].provenance["schedule"]["attempts"] == 1
    assert got["fine"].status is Status.ACCEPTED
    assert got["always"].status is Status.CRASHED and "lost 2 times" in got["always"].reason


def test_a_raising_evaluator_is_a_crash_and_a_raising_precheck_passes_the_work_on() -> None:
    def broken_precheck(req):
        raise ValueError("bug in the checks")

    d = LocalDispatcher({"cpu": 1}, scripted, broken_precheck)
    d.submit("bug", request("raise"), "cpu")
    d.submit("ok", request(""), "cpu")
    got = {k: r for k, _, r in drain(d)}
    assert got["bug"].status is Status.CRASHED and "RuntimeError: a bug in the evaluator" in got["bug"].reason
    assert got["ok"].status is Status.ACCEPTED


def test_a_timeout_is_delivered_and_the_device_goes_on_with_a_fresh_worker() -> None:
    d = LocalDispatcher({"cpu": 1}, scripted, timeout_s=3.0)
    d.submit("hangs", request("hang"), "cpu", priority=0)
    d.submit("after", request(""), "cpu", priority=1)
    got = {k: r for k, _, r in drain(d)}        # returns although the hung thread still sleeps
    assert got["hangs"].status is Status.TIMEOUT and "no result within 3 s" in got["hangs"].reason
    assert got["after"].status is Status.ACCEPTED
    assert got["after"].provenance["schedule"]["device_id"] == got["hangs"].provenance["schedule"]["device_id"]


def test_withdrawn_keys_are_never_delivered() -> None:
    d = LocalDispatcher({"cpu": 1}, scripted, precheck)
    keys = [f"k{i}" for i in range(5)]
    for k in keys:
        d.submit(k, request(f"sleep 0.5\n# {k}\n"), "cpu")
    got = d.poll(timeout=0.2)
    taken = d.withdraw()
    got += drain(d)
    delivered = [k for k, _, _ in got]
    assert taken, "one device cannot have started five half-second evaluations in 0.2 s"
    assert set(taken).isdisjoint(delivered) and sorted(taken + delivered) == keys
    assert taken == [k for k in keys if k in taken]
    assert d.in_flight() == set() and d.withdraw() == []
    d.submit(taken[0], request("# again\n"), "cpu")
    assert [k for k, _, _ in drain(d)] == [taken[0]]


def test_precheck_verdicts_spend_no_device_time() -> None:
    d = LocalDispatcher({"cpu": 1}, scripted, precheck)
    d.submit("bad", request("bad"), "cpu")
    d.submit("good", request(""), "cpu")
    got = {k: r for k, _, r in drain(d)}
    assert got["bad"].status is Status.STATIC_VIOLATION and got["bad"].provenance["schedule"]["device_id"] is None
    assert got["good"].provenance["schedule"]["device_id"] == "cpu:local:0"


def test_verify_slots_overlap_on_one_device_and_the_timing_slot_is_handed_to_the_evaluator(tmp_path: Path) -> None:
    marker = tmp_path / "m"
    d = LocalDispatcher({"gpu": 1}, scripted, slots=2)
    d.submit("waits", request(f"wait-for {marker}"), "gpu")
    d.submit("touches", request(f"touch {marker}"), "gpu")
    got = {k: r for k, _, r in drain(d)}
    # "waits" can only finish if "touches" ran beside it on the same device
    assert {r.status for r in got.values()} == {Status.ACCEPTED}
    assert all("slot=True" in r.reason for r in got.values())


def test_a_poisoned_device_is_replaced_and_the_work_beside_it_runs_again() -> None:
    s = Scheduler(["gpu"], timeout_s=60)
    s.add_device("g0", "gpu", slots=2)
    s.submit("poison", "req-p", "gpu", 0, now=0.0)
    s.submit("bystander", "req-b", "gpu", 0, now=0.0)
    first = {t.key: t for t in s.assign(now=1.0)}
    assert set(first) == {"poison", "bystander"}
    s.done(first["poison"].id, scripted(request("poison")), now=2.0)
    assert s.take_doomed() == [("g0", "poisoned by poison")]
    s.done(first["bystander"].id, scripted(request("")), now=2.5)     # a late answer from the killed worker
    assert [k for k, *_ in s.take()] == ["poison"]
    s.add_device("g0", "gpu", slots=2)
    again, = s.assign(now=3.0)
    assert again.key == "bystander" and again.attempt == 0            # an innocent bystander is not charged
    s.done(again.id, scripted(request("")), now=4.0)
    (key, _, result, timing), = s.take()
    assert key == "bystander" and result.status is Status.ACCEPTED and timing.started_at == 3.0


def test_poisoned_is_read_from_the_result() -> None:
    assert poisoned(scripted(request("poison")))
    assert not poisoned(EvalResult(Status.CRASHED, "killed by SIGSEGV"))
    assert not poisoned(EvalResult(Status.MISMATCH, "output differs"))


def test_every_key_is_delivered_exactly_once_through_losses_timeouts_and_withdrawal(tmp_path: Path) -> None:
    d = LocalDispatcher({"cpu": 2, "gpu": 1}, scripted, precheck, slots={"gpu": 2}, timeout_s=1.0, retries=2)
    scripts = ["", "sleep 0.05", "bad", "raise", "hang", "poison"] + [f"lose-once {tmp_path}/m{i}" for i in range(4)]
    keys = {}
    for i in range(40):
        hw = ("cpu", "gpu")[i % 2]
        keys[f"k{i}"] = hw
        d.submit(f"k{i}", request(f"{scripts[i % len(scripts)]}\n# {i}\n"), hw, priority=i % 3)
    got = d.poll(timeout=0.5)
    taken = d.withdraw()
    got += drain(d, limit_s=120)
    counts = collections.Counter(k for k, _, _ in got)
    assert set(counts.values()) <= {1}
    assert set(counts) | set(taken) == set(keys) and not set(counts) & set(taken)
    assert all(hw == keys[k] for k, hw, _ in got)


def test_a_class_with_no_local_device_is_refused() -> None:
    with pytest.raises(NoDevice, match="no local device for hardware class h100"):
        LocalDispatcher({"cpu": 1, "h100": 0}, scripted)


def test_a_device_holds_its_builds_ahead_beside_its_verify_slots() -> None:
    """With one verify slot and two builds ahead, three evaluations are under way on one device at once, and only
    one of them holds the device's shared (verify) slot at a time."""
    import threading
    lock = threading.Lock()
    seen = {"running": 0, "most_running": 0, "verifying": 0, "most_verifying": 0}
    three_in = threading.Barrier(3, timeout=20)

    def evaluate(req, timing_slot):
        with lock:
            seen["running"] += 1
            seen["most_running"] = max(seen["most_running"], seen["running"])
        three_in.wait()                       # only passes if three evaluations run at once ("building")
        with timing_slot.shared():
            with lock:
                seen["verifying"] += 1
                seen["most_verifying"] = max(seen["most_verifying"], seen["verifying"])
            threading.Event().wait(0.05)
            with lock:
                seen["verifying"] -= 1
        with lock:
            seen["running"] -= 1
        return EvalResult(Status.ACCEPTED, "ok")

    d = LocalDispatcher({"gpu": 1}, evaluate, slots=1, build_ahead=2)
    for i in range(3):
        d.submit(f"k{i}", request(f"# {i}\n"), "gpu")
    got = {k: r for k, _, r in drain(d)}
    assert {r.status for r in got.values()} == {Status.ACCEPTED}
    assert seen["most_running"] == 3 and seen["most_verifying"] == 1
