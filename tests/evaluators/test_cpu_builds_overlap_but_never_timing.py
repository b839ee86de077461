"""On a CPU device, whose cores both run the timed calls and build the next candidates, a second evaluation builds
while the first is built or verified, and never while one is timed: builds, child start-ups and reference runs hold
``DeviceSlot.building``, which overlaps other builds and verification, while timing waits for every building
holder to leave and keeps new ones out."""
from __future__ import annotations

import threading
import time

from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy
from evaluators.result import Status
from evaluators.warm import POOL
from search.protocol import DeviceSlot


def _wait_until(cond, limit_s=10.0):
    end = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def test_builds_overlap_each_other_and_verification_and_timing_waits_for_them():
    slot = DeviceSlot(shared_limit=1)
    leave, order = threading.Event(), []

    def build(name):
        with slot.building():
            order.append(f"{name} in")
            leave.wait()
            order.append(f"{name} out")

    builders = [threading.Thread(target=build, args=(n,)) for n in ("a", "b")]
    for th in builders:
        th.start()
    _wait_until(lambda: slot.builders() == 2)                # two builds at once, beyond the one verify slot
    with slot.shared():                                       # and a verification beside them
        assert slot.builders() == 2
    def time_it():
        with slot:
            order.append("timing")

    timer = threading.Thread(target=time_it)
    timer.start()
    time.sleep(0.05)
    assert "timing" not in order                              # not while a build runs on the cores
    late = threading.Thread(target=build, args=("late",))
    late.start()
    time.sleep(0.05)
    assert "late in" not in order                             # a new build waits for the waiting timing
    leave.set()
    for th in (*builders, timer, late):
        th.join(5)
    assert order.index("timing") > max(order.index("a out"), order.index("b out"))
    assert order.index("late in") > order.index("timing")
    assert slot.builders() == 0 and slot.holders() == (0, False)


class RecordingSlot(DeviceSlot):
    """A device slot that notes when each hold is taken and left, per kind."""

    def __init__(self):
        super().__init__(shared_limit=1)
        self.events: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    def _note(self, what, edge):
        with self._lock:
            self.events.append((time.monotonic(), what, edge))

    def building(self):
        inner = super().building()
        slot = self

        class Hold:
            def __enter__(self):
                inner.__enter__()
                slot._note("building", "in")

            def __exit__(self, *exc):
                slot._note("building", "out")
                return inner.__exit__(*exc)
        return Hold()

    def __enter__(self):
        super().__enter__()
        self._note("timing", "in")
        return self

    def __exit__(self, *exc):
        self._note("timing", "out")
        return super().__exit__(*exc)

    def busy(self, what):
        """The periods during which at least one hold of ``what`` was held."""
        periods, depth, start = [], 0, 0.0
        for t, w, edge in sorted(self.events):
            if w != what:
                continue
            if edge == "in":
                start = t if depth == 0 else start
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    periods.append((start, t))
        return periods


PROBLEM = """\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return torch.sigmoid(x) + 1.0


def get_inputs():
    return [torch.randn(128, 128)]


def get_init_inputs():
    return []
"""


def test_two_cpu_evaluations_build_side_by_side_and_nothing_builds_while_one_is_timed(tmp_path):
    problem = tmp_path / "sigmoid_one.py"
    problem.write_text(PROBLEM)
    sources = [PROBLEM.replace("class Model(", "class ModelNew(").replace("+ 1.0", f"+ {v}") for v in
               ("1.0", "(0.5 + 0.5)")]
    slot, results = RecordingSlot(), {}

    def run(i):
        results[i] = evaluate(EvalRequest(problem_path=str(problem), candidate_source=sources[i], device="cpu",
                                          mode="bench", verify=VerifyPolicy(seed=3), cache_dir=str(tmp_path / "c"),
                                          timing=TimingPolicy(baselines=("eager",), time_cap_s=0.5, min_blocks=6,
                                                              max_blocks=12)),
                              timing_slot=slot)

    POOL.close()
    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(600)
    finally:
        POOL.close()
        POOL.retain(False)      # an evaluation with a slot made the pool keep spares; later tests expect none
    assert all(r.status == Status.ACCEPTED for r in results.values()), [r.reason for r in results.values()]
    builds, timings = slot.busy("building"), slot.busy("timing")
    # each evaluation held it for its reference, start-up and build, and again for its baseline's build
    assert len([e for e in slot.events if e[1:] == ("building", "in")]) >= 4
    assert len(timings) == 2
    for t0, t1 in timings:
        assert not [b for b in builds if b[0] < t1 and t0 < b[1]], (t0, t1, builds)
    # the two evaluations' building holds overlapped at some moment: two builds at once
    ins = sorted((t, +1 if e == "in" else -1) for t, w, e in slot.events if w == "building")
    depth, most = 0, 0
    for _, d in ins:
        depth += d
        most = max(most, depth)
    assert most == 2, slot.events
