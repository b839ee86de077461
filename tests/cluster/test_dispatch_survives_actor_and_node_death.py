"""Fault injection: evaluators and nodes die mid-campaign, and every key is still delivered exactly once."""
import collections
import logging
import os
import signal
import time

import pytest

from cluster.dispatch import Dispatcher
from evaluators.result import Status
from tests.cluster._evals import drain, request

pytestmark = pytest.mark.ray


def test_killed_actor_and_removed_node_lose_no_evaluation(two_nodes, caplog):
    """Each fault strikes as soon as its target has delivered once, while it has more work: the cpu evaluator is
    killed after its first result, the extra node removed after its first. The fakegpu queue is topped up until
    the extra node (whose evaluator starts last) has delivered, so that it always gets work."""
    caplog.set_level(logging.WARNING, logger="cluster.dispatch")
    extra = two_nodes.add_node(**{"hw:fakegpu": 1})
    extra_id = extra.node_id
    keys = {f"{hw}-{i}": hw for i in range(10) for hw in ("cpu", "fakegpu")}
    d = Dispatcher(["cpu", "fakegpu"], "tests.cluster._evals:scripted", retries=3, rescan_s=0.5)
    delivered = []
    cpu_pid = None
    deadline = time.monotonic() + 300
    try:
        assert d.capacity() == {"cpu": 1, "fakegpu": 2}
        for key, hw in keys.items():
            d.submit(key, request(f"sleep 0.3\n# {key}"), hw)
        while extra is not None:
            assert time.monotonic() < deadline, "the extra node never delivered"
            delivered += d.poll(timeout=0.5)
            if cpu_pid is None and any(hw == "cpu" for _, hw, _ in delivered):
                cpu_pid = next(r.provenance["pid"] for _, hw, r in delivered if hw == "cpu")
                os.kill(cpu_pid, signal.SIGKILL)         # an evaluator process dies under its work
            if cpu_pid is not None and any(r.provenance["ran_on"] == extra_id for _, _, r in delivered):
                two_nodes.cluster.remove_node(extra)     # a whole node goes away with its work in flight
                extra = None
            elif sum(1 for hw in keys.values() if hw == "fakegpu") - sum(
                    1 for _, hw, _ in delivered if hw == "fakegpu") < 4:
                key = f"fakegpu-{len(keys)}"
                keys[key] = "fakegpu"
                d.submit(key, request(f"sleep 0.3\n# {key}"), "fakegpu")
        delivered += drain(d)
    finally:
        d.shutdown()
        if extra is not None:
            two_nodes.cluster.remove_node(extra)
    counts = collections.Counter(k for k, _, _ in delivered)
    assert set(counts) == set(keys) and set(counts.values()) == {1}
    assert all(r.status is Status.ACCEPTED for _, _, r in delivered)
    after_kill = [r for _, hw, r in delivered if hw == "cpu" and r.provenance["pid"] != cpu_pid]
    assert after_kill, "the cpu evaluator was replaced and went on"
    for _, hw, r in delivered:
        assert r.provenance["ran_on"] in ({two_nodes.head_id} if hw == "cpu" else {two_nodes.gpu_id, extra_id})
    redispatched = [m for m in caplog.messages if m.startswith("re-dispatching")]
    assert len(redispatched) >= 2, "both faults hit work in flight"


def test_work_that_kills_its_actor_is_retried_then_reported_crashed(two_nodes, tmp_path):
    d = Dispatcher(["fakegpu"], "tests.cluster._evals:scripted", retries=1, rescan_s=0.5)
    try:
        d.submit("once", request(f"die-once {tmp_path / 'marker'}"), "fakegpu")
        d.submit("always", request("die"), "fakegpu")
        d.submit("fine", request("sleep 0.01"), "fakegpu")
        got = {k: r for k, _, r in drain(d)}
    finally:
        d.shutdown()
    assert set(got) == {"once", "always", "fine"}
    assert got["once"].status is Status.ACCEPTED
    assert got["fine"].status is Status.ACCEPTED
    assert got["always"].status is Status.CRASHED
    assert "lost 2 times" in got["always"].reason
