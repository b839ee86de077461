"""Where a device holds several evaluations at once (a GPU's verify slots), the campaign sends a problem's next
evaluation behind every other problem's earlier ones, so the evaluations held together are of different problems
(several of one problem whose data is large would take the device's memory in turn while the device idles). Where
a device verifies one at a time, the order stays cheap candidates first. Without Ray."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from _scripted import scripted

from search.campaign import Campaign
from search.config import load_config
from search.local_dispatch import LocalDispatcher
from search.population import read_population

PROBLEMS = ("alpha", "beta", "gamma")
PER_PROBLEM = 4


def _campaign(tmp: Path, verify_slots: int) -> Path:
    cands = tmp / "cands"
    cands.mkdir()
    for name in PROBLEMS:
        (tmp / f"{name}.py").write_text(
            "import torch\nclass Model(torch.nn.Module):\n    def forward(self, x):\n        return 2 * x\n"
            "def get_inputs():\n    return [torch.randn(4)]\ndef get_init_inputs():\n    return []\n")
        for i in range(PER_PROBLEM):
            (cands / f"{name}__{i}.py").write_text(f"# {name} {i}\nsleep 0.2\n")
    problems = "".join(f'[[problems]]\npath = "{name}.py"\n' for name in PROBLEMS)
    toml = tmp / "c.toml"
    toml.write_text(f'[campaign]\nname = "spread"\nout = "run"\nseed = 3\n[budget]\n'
                    f'max_evaluations = {len(PROBLEMS) * PER_PROBLEM}\nmax_minutes = 5\n{problems}'
                    f'[[targets]]\nhardware = "cpu"\nverify_slots = {verify_slots}\nbuild_ahead = 0\n'
                    f'[[proposers]]\nkind = "files"\ndir = "cands"\nper_generation = {PER_PROBLEM}\n')
    return toml


def _started_order(tmp: Path, verify_slots: int, precheck=None) -> list[str]:
    """The problem of each evaluation in the order the device started them (after cheap checks, if given)."""
    started: list[str] = []
    lock = threading.Lock()

    def recording(req, *, timing_slot=None):
        with lock:
            started.append(Path(req.problem_path).stem)
        return scripted(req, timing_slot=timing_slot)

    cfg = load_config(_campaign(tmp, verify_slots))
    Campaign(cfg, tmp / "run", local=True, dispatcher_factory=lambda cfg: LocalDispatcher(
        {"cpu": 1}, recording, precheck, slots=verify_slots)).run()
    assert read_population(tmp / "run").num_rows == len(PROBLEMS) * PER_PROBLEM
    return started


def _passes(req):
    """Cheap checks that pass every candidate (the real ones read the source: these are scripts)."""
    return None


@pytest.mark.parametrize("precheck", [None, _passes], ids=["no-cheap-checks", "after-cheap-checks"])
def test_evaluations_held_together_are_of_different_problems(tmp_path, precheck):
    started = _started_order(tmp_path, verify_slots=3, precheck=precheck)
    # every problem's first evaluation before any problem's second, and so on: each round of starts holds each
    # problem once
    rounds = [started[i:i + len(PROBLEMS)] for i in range(0, len(started), len(PROBLEMS))]
    assert all(sorted(r) == sorted(PROBLEMS) for r in rounds), started


@pytest.mark.parametrize("slots", [1])
def test_a_device_that_verifies_one_at_a_time_keeps_the_feed_order(tmp_path, slots):
    """No spreading where nothing is held together: the queue ahead is not deepened either, so the first
    problem's candidates (one island's visit) go first."""
    started = _started_order(tmp_path, verify_slots=slots)
    assert len(started) == len(PROBLEMS) * PER_PROBLEM
    assert started[:PER_PROBLEM] == [PROBLEMS[0]] * PER_PROBLEM, started


def test_cheap_checks_start_the_lowest_priority_first():
    from search.scheduler import Scheduler
    sched = Scheduler(["cpu"], timeout_s=60, precheck=True, max_prechecks=1)
    sched.add_device("cpu:0", "cpu", slots=1)
    for key, priority in (("late", 9), ("first", 0), ("middle", 4)):
        sched.submit(key, object(), "cpu", priority, now=0.0)
    order = []
    for _ in range(3):
        (ticket,) = [t for t in sched.assign(1.0) if t.stage == "precheck"]
        order.append(ticket.key)
        sched.done(ticket.id, None, now=1.0)        # passed its cheap checks
    assert order == ["first", "middle", "late"]
