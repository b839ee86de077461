"""A device's slot: verifications overlap one another, timing has the device alone, and waiting timing is not
starved by verifications that keep arriving."""
import threading
import time

from search.protocol import DeviceSlot


def _wait_until(cond, limit_s=10.0):
    end = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def test_shared_holds_overlap_and_timing_waits_for_them_to_leave():
    slot = DeviceSlot()
    leave = threading.Event()
    order = []

    def verify(name):
        with slot.shared():
            order.append(f"{name} in")
            leave.wait()
            order.append(f"{name} out")

    def time_it():
        with slot:
            order.append("timing")

    a, b = threading.Thread(target=verify, args=("a",)), threading.Thread(target=verify, args=("b",))
    a.start(), b.start()
    _wait_until(lambda: slot.holders() == (2, False))        # two verifications at once
    t = threading.Thread(target=time_it)
    t.start()
    time.sleep(0.05)
    assert "timing" not in order                              # not while anything else is on the device
    leave.set()
    for th in (a, b, t):
        th.join(5)
    assert order.index("timing") > max(order.index("a out"), order.index("b out"))
    assert slot.holders() == (0, False)


def test_nothing_shares_the_device_while_it_is_timed_and_timing_is_not_starved():
    slot = DeviceSlot()
    timing_started = threading.Event()
    seen_during_timing = []
    stop = threading.Event()

    def verifier():
        while not stop.is_set():
            with slot.shared():
                time.sleep(0.002)

    def timer():
        with slot:
            timing_started.set()
            for _ in range(20):
                seen_during_timing.append(slot.holders())
                time.sleep(0.001)

    workers = [threading.Thread(target=verifier) for _ in range(3)]
    for w in workers:
        w.start()
    _wait_until(lambda: slot.holders()[0] > 0)
    t = threading.Thread(target=timer)
    t.start()
    assert timing_started.wait(10), "timing starved by a stream of verifications"
    t.join(5)
    stop.set()
    for w in workers:
        w.join(5)
    assert seen_during_timing and all(h == (0, True) for h in seen_during_timing)


def test_an_exception_inside_either_hold_releases_it():
    slot = DeviceSlot()
    for hold in (slot.shared, lambda: slot):
        try:
            with hold():
                raise RuntimeError("candidate failed")
        except RuntimeError:
            pass
        assert slot.holders() == (0, False)


def test_memory_reservations_take_turns_past_the_capacity_and_a_large_one_still_runs_alone() -> None:
    slot = DeviceSlot()
    order: list[str] = []
    first = slot.reserve(60, capacity=100)
    first.__enter__()
    assert not slot.would_wait(40, 100) and slot.would_wait(41, 100)
    done = threading.Event()

    def second() -> None:
        with slot.reserve(50, capacity=100):    # 60 + 50 > 100: waits for the first to end
            order.append("second in")
        done.set()

    t = threading.Thread(target=second)
    t.start()
    with slot.reserve(40, capacity=100):        # 60 + 40 fits beside the first
        order.append("small in")
    assert not done.wait(0.3), "a reservation past the capacity went ahead"
    order.append("first out")
    first.__exit__(None, None, None)
    assert done.wait(10)
    t.join()
    assert order == ["small in", "first out", "second in"]
    # one reservation larger than the whole capacity runs when it is alone, rather than never
    with slot.reserve(500, capacity=100):
        assert slot.would_wait(1, 100)
    assert not slot.would_wait(100, 100)


def test_a_shared_limit_keeps_the_holders_beyond_it_waiting_until_one_leaves():
    slot = DeviceSlot(shared_limit=2)
    leave = [threading.Event() for _ in range(3)]
    inside = []

    def verify(i):
        with slot.shared():
            inside.append(i)
            leave[i].wait()

    threads = [threading.Thread(target=verify, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    _wait_until(lambda: slot.holders() == (2, False))
    time.sleep(0.05)
    assert slot.holders() == (2, False) and len(inside) == 2      # the third builds on, outside the device
    first = inside[0]
    leave[first].set()
    _wait_until(lambda: len(inside) == 3)                        # a freed verify slot lets the third in
    assert slot.holders() == (2, False)
    for e in leave:
        e.set()
    for th in threads:
        th.join(5)
    assert slot.holders() == (0, False)


def test_a_shared_limit_below_one_is_refused():
    import pytest
    with pytest.raises(ValueError, match="at least 1"):
        DeviceSlot(shared_limit=0)


def test_a_reservation_of_the_whole_memory_is_not_starved_by_smaller_ones():
    """An evaluation that must have the device's memory to itself waits for the reservations under way to end,
    and keeps new ones out meanwhile."""
    slot = DeviceSlot()
    first = slot.reserve(40, 100)
    first.__enter__()
    order = []
    alone_in = threading.Event()

    def alone():
        with slot.reserve(100, 100):
            order.append("alone")
            alone_in.set()
            time.sleep(0.05)

    def small():
        with slot.reserve(10, 100):
            order.append("small")

    a = threading.Thread(target=alone)
    a.start()
    _wait_until(lambda: slot.would_wait(10, 100))            # the whole-memory request is waiting
    s = threading.Thread(target=small)
    s.start()
    time.sleep(0.05)
    assert order == []                                        # 10 more would fit, but the small one waits too
    first.__exit__(None, None, None)
    assert alone_in.wait(5)
    a.join(5), s.join(5)
    assert order == ["alone", "small"]
