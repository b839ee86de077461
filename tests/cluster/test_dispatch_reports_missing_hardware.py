"""A target class that no node offers is reported at once, or after a bounded wait; never waited on forever."""
import re
import threading
import time

import pytest

from cluster.dispatch import Dispatcher, HardwareUnavailable
from tests.cluster._evals import drain, request

pytestmark = pytest.mark.ray


def test_unknown_target_fails_fast_naming_what_is_there(two_nodes):
    start = time.monotonic()
    with pytest.raises(HardwareUnavailable) as info:
        Dispatcher(["cpu", "h100"], "tests.cluster._evals:null")
    assert time.monotonic() - start < 60                  # no waiting: a generous bound for a loaded host
    message = str(info.value)
    assert "hardware class h100" in message and "cpu (1), fakegpu (1)" in message
    assert info.value.missing == ["h100"]


def test_waiting_for_hardware_is_bounded(two_nodes):
    start = time.monotonic()
    with pytest.raises(HardwareUnavailable, match=r"waited \d+(\.\d)? s") as info:
        Dispatcher(["h100"], "tests.cluster._evals:null", wait_s=1.5)
    assert float(re.search(r"waited (\d+(?:\.\d)?) s", str(info.value)).group(1)) >= 1.5
    assert 1.5 <= time.monotonic() - start < 60


def test_a_node_that_joins_while_waiting_is_used(two_nodes):
    made, failed = [], []

    def wait() -> None:
        try:
            made.append(Dispatcher(["latecomer"], "tests.cluster._evals:scripted", wait_s=300, rescan_s=0.5))
        except Exception as e:                              # shown by the assertion below, not lost in the thread
            failed.append(e)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.0)
    node = two_nodes.add_node(**{"hw:latecomer": 1})
    try:
        waiter.join(timeout=300)
        assert not failed, failed
        d, = made
        try:
            d.submit("k", request(), "latecomer")
            (key, hw, result), = drain(d)
        finally:
            d.shutdown()
        assert result.provenance["ran_on"] == node.node_id
    finally:
        two_nodes.cluster.remove_node(node)


def test_losing_the_last_node_of_a_class_names_the_undelivered_keys(two_nodes):
    node = two_nodes.add_node(**{"hw:lonely": 1})
    d = Dispatcher(["lonely", "cpu"], "tests.cluster._evals:scripted", wait_s=1.0, rescan_s=0.5)
    try:
        d.submit("a", request("sleep 0.2"), "lonely")
        assert [k for k, _, _ in drain(d)] == ["a"]
        two_nodes.cluster.remove_node(node)
        node = None
        d.submit("b", request(), "lonely")
        d.submit("c", request("sleep 0.5"), "cpu")
        got = []
        with pytest.raises(HardwareUnavailable) as info:
            for _ in range(30):
                got += d.poll(timeout=1.0)
        assert info.value.keys == ["b"] and info.value.missing == ["lonely"]
        assert d.in_flight() <= {"c"}
        got += drain(d)
        assert [k for k, _, _ in got] == ["c"]      # the other class goes on
    finally:
        d.shutdown()
        if node is not None:
            two_nodes.cluster.remove_node(node)


def test_unimportable_evaluator_fails_at_construction(two_nodes):
    with pytest.raises(ValueError, match="cannot import 'tests.cluster._evals:nope'"):
        Dispatcher(["cpu"], "tests.cluster._evals:nope")
