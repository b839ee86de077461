"""A GPU evaluation's memory reservation follows its phases: it holds its verification's share from the start and
grows by its baselines' share before their children are built. An evaluation is let in only where the largest
growth still to come fits beside everything held, so growths never wait on each other for ever, and a kept
baseline child never takes the room a growth needs."""
from __future__ import annotations

import random
import threading
import time

from evaluators import device_memory
from search.protocol import DeviceSlot


def test_an_evaluation_is_let_in_only_where_the_largest_growth_to_come_still_fits():
    slot = DeviceSlot()
    a = slot.reserve(20, 100, grow=50)
    a.__enter__()
    assert not slot.would_wait(20, 100, grow=50)        # 20 + 20 + 50 fits
    b = slot.reserve(20, 100, grow=50)
    b.__enter__()
    assert slot.would_wait(20, 100, grow=50)            # 40 + 20 + 50 would not
    assert slot.would_wait(20, 100, grow=0)             # nor 40 + 20 beside a growth of 50 still to come
    assert not slot.would_wait(10, 100, grow=0)         # 40 + 10 + 50 does
    got_in = threading.Event()

    def third():
        with slot.reserve(20, 100, grow=50):
            got_in.set()

    t = threading.Thread(target=third)
    t.start()
    time.sleep(0.05)
    assert not got_in.is_set()
    a.__exit__(None, None, None)                        # 20 + 20 + 50 fits again
    assert got_in.wait(5)
    t.join(5)
    b.__exit__(None, None, None)
    assert not slot.would_wait(100, 100)                # everything given back


def test_a_growth_waits_for_an_evaluation_that_grew_to_end_then_goes_ahead():
    slot = DeviceSlot()
    a_cm, b_cm = slot.reserve(20, 100, grow=50), slot.reserve(20, 100, grow=50)
    a, b = a_cm.__enter__(), b_cm.__enter__()
    a.grow()                                            # 20 + 50 + 20 = 90
    assert a.grown and a.nbytes == 70
    assert b.would_wait()
    grown = threading.Event()

    def grow_b():
        b.grow()
        grown.set()

    t = threading.Thread(target=grow_b)
    t.start()
    time.sleep(0.05)
    assert not grown.is_set()                           # 90 + 50 would pass the capacity
    a_cm.__exit__(None, None, None)
    assert grown.wait(5)
    t.join(5)
    assert b.nbytes == 70
    b.grow()                                            # once only: a second call takes nothing more
    assert b.nbytes == 70 and not b.would_wait()
    b_cm.__exit__(None, None, None)
    assert not slot.would_wait(100, 100)


def test_the_only_evaluation_grows_past_the_capacity_without_waiting():
    slot = DeviceSlot()
    with slot.reserve(80, 100, grow=60) as held:
        assert not held.would_wait()
        held.grow()
        assert held.nbytes == 140
        assert slot.would_wait(1, 100)                  # and nothing else is let in meanwhile
    assert not slot.would_wait(100, 100)


def test_a_kept_child_never_takes_the_room_a_growth_needs():
    slot = DeviceSlot()
    with slot.reserve(20, 100, grow=50) as held:
        assert slot.try_reserve(40, 100) is None        # 20 + 40 + 50 > 100: refused
        kept = slot.try_reserve(30, 100)                 # 20 + 30 + 50 fits
        assert kept is not None
        assert not held.would_wait()
        held.grow()
        kept()
    assert not slot.would_wait(100, 100)


def test_an_evaluation_that_never_grows_gives_its_growth_room_back():
    """A verification-only evaluation, or one rejected before its baselines, ends without growing: the growth it
    declared no longer keeps others out."""
    slot = DeviceSlot()
    with slot.reserve(20, 100, grow=70):
        assert slot.would_wait(20, 100)
    assert not slot.would_wait(20, 100) and slot.try_reserve(90, 100) is not None


def test_many_evaluations_with_random_sizes_all_end_and_never_overcommit_the_device():
    """No deadlock between growths, and the reservations never pass the capacity unless one evaluation is alone."""
    slot = DeviceSlot()
    capacity = 1000
    rng = random.Random(7)
    plans = [(rng.randint(10, 600), rng.randint(0, 500), rng.random() < 0.8) for _ in range(60)]
    over: list[tuple[int, int]] = []
    lock = threading.Lock()
    inside = [0, 0]             # (evaluations holding, bytes held)

    def evaluation(now: int, later: int, grows: bool) -> None:
        with slot.reserve(now, capacity, grow=later) as held:
            with lock:
                inside[0] += 1
                inside[1] += now
            time.sleep(rng.random() * 0.003)
            if grows:
                held.grow()
                with lock:
                    inside[1] += later
                    if inside[1] > capacity and inside[0] > 1:
                        over.append(tuple(inside))
            time.sleep(rng.random() * 0.003)
            with lock:
                inside[0] -= 1
                inside[1] -= now + (later if grows else 0)

    threads = [threading.Thread(target=evaluation, args=plan, daemon=True) for plan in plans]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not [t for t in threads if t.is_alive()], "evaluations waited on each other for ever"
    assert over == [], f"the device was overcommitted: {over[:3]}"
    assert not slot.would_wait(capacity, capacity)


def test_the_two_phases_add_up_to_the_peak_reservation():
    gb = 1 << 30
    cap = 100 * gb
    for data in (0, 1, gb, 5 * gb):
        now, later = device_memory.phase_bytes(data, cap)
        assert now + later == device_memory.need_bytes(data, cap) and now > 0 and later > 0
        if data >= gb:          # the verification holds the larger part: the reference and the candidate's child
            assert later < now
    assert device_memory.phase_bytes(None, cap) == (device_memory.need_bytes(None, cap), 0)
