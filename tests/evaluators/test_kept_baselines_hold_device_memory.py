"""Kept baseline children are counted in the device's memory reservations.

A long-lived evaluator keeps built baseline children for the next candidate of their problem. On a GPU shared by
several evaluations their memory used to lie outside every reservation, so every evaluation that would have
waited for memory ended all of them, and the next candidate of each problem built its baselines (a torch.compile)
again. Now a kept child holds a reservation of its own while it waits (taken without waiting, else it is ended),
gives it back when it is taken again, and kept children are ended the longest kept first, only until the waiting
evaluation fits.
"""
from __future__ import annotations

import threading
import time

import pytest

from evaluators.sandbox import SandboxLimits
from evaluators.warm import POOL
from search.protocol import DeviceSlot

GB = 1 << 30


def test_a_reservation_taken_without_waiting_fits_or_is_refused():
    slot = DeviceSlot()
    release = slot.try_reserve(6 * GB, 10 * GB)
    assert release is not None
    assert slot.try_reserve(5 * GB, 10 * GB) is None          # 6 + 5 > 10: refused, not waited for
    assert slot.would_wait(5 * GB, 10 * GB)
    release()
    release()                                                  # a second release gives nothing back twice
    assert not slot.would_wait(10 * GB, 10 * GB)
    again = slot.try_reserve(4 * GB, 10 * GB)
    assert again is not None and slot.try_reserve(6 * GB, 10 * GB) is not None
    assert slot.try_reserve(1, 10 * GB) is None


def test_a_waiting_reservation_goes_ahead_when_a_kept_hold_is_given_back():
    slot = DeviceSlot()
    kept = slot.try_reserve(8 * GB, 10 * GB)
    entered = threading.Event()

    def evaluation():
        with slot.reserve(5 * GB, 10 * GB):
            entered.set()
    t = threading.Thread(target=evaluation)
    t.start()
    time.sleep(0.1)
    assert not entered.is_set()
    kept()
    assert entered.wait(5)
    t.join(5)


def test_a_whole_device_reservation_waiting_keeps_kept_holds_out():
    slot = DeviceSlot()
    first = slot.try_reserve(GB, 10 * GB)
    done = threading.Event()

    def alone():
        with slot.reserve(10 * GB, 10 * GB):
            done.set()
    t = threading.Thread(target=alone)
    t.start()
    deadline = time.monotonic() + 5
    while slot.try_reserve(0, 10 * GB) is not None and time.monotonic() < deadline:
        time.sleep(0.01)                                      # until the whole-device request is waiting
    assert slot.try_reserve(GB, 10 * GB) is None
    first()
    assert done.wait(5)
    t.join(5)


@pytest.fixture()
def pool():
    POOL.close()
    POOL.retain(True)
    yield POOL
    POOL.retain(False)
    POOL.close()


def _keep(pool, cache_dir, name, hold):
    with pool.built_baseline(SandboxLimits(timeout_s=120), cache_dir, (name,), lambda child: {}, hold) as child:
        return child


def test_kept_children_hold_reservations_and_give_them_back(pool, kswarm_cache_dir):
    slot = DeviceSlot()
    cap = 10 * GB
    hold = lambda: slot.try_reserve(4 * GB, cap)               # noqa: E731
    a = _keep(pool, kswarm_cache_dir, "a", hold)
    b = _keep(pool, kswarm_cache_dir, "b", hold)
    assert a.proc.poll() is None and b.proc.poll() is None    # both kept, 8 GB held
    assert slot.would_wait(3 * GB, cap)
    c = _keep(pool, kswarm_cache_dir, "c", hold)               # 4 GB more do not fit: c is ended, not kept
    c.proc.wait(10)
    # taken again, a gives its hold back while in use (the evaluation's reservation covers it), then takes it anew
    with pool.built_baseline(SandboxLimits(timeout_s=120), kswarm_cache_dir, ("a",), lambda child: {}, hold) as again:
        assert again is a and a.reused
        assert not slot.would_wait(6 * GB, cap)
    assert slot.would_wait(3 * GB, cap)
    # an evaluation that needs 5 GB ends the longest kept child (b) only, then fits
    pool.drop_built(enough=lambda: not slot.would_wait(5 * GB, cap))
    b.proc.wait(10)
    assert a.proc.poll() is None and not slot.would_wait(5 * GB, cap)
    pool.drop_built()
    a.proc.wait(10)
    assert not slot.would_wait(cap, cap)                       # every hold given back


def test_two_children_built_at_once_for_one_problem_keep_one_and_end_the_other(pool, kswarm_cache_dir):
    # two evaluations of one problem in flight at once each build the baseline; when both are done, one child is
    # kept and the other is ended with its reservation given back, not dropped from the table still running
    slot = DeviceSlot()
    cap = 10 * GB
    hold = lambda: slot.try_reserve(3 * GB, cap)               # noqa: E731
    limits = SandboxLimits(timeout_s=120)
    with pool.built_baseline(limits, kswarm_cache_dir, ("p",), lambda child: {}, hold) as first:
        with pool.built_baseline(limits, kswarm_cache_dir, ("p",), lambda child: {}, hold) as second:
            assert first is not second
        assert second.proc.poll() is None                      # done first: kept
    second.proc.wait(10)                                       # replaced by the one done last: ended
    assert first.proc.poll() is None
    assert not slot.would_wait(7 * GB, cap) and slot.would_wait(8 * GB, cap)   # one 3 GB hold, not two
    pool.drop_built()
    first.proc.wait(10)
    assert not slot.would_wait(cap, cap)
