"""Each hardware class's evaluations run on the node that offers it; cheap checks run on CPUs first."""
import pytest

from cluster.dispatch import Dispatcher
from evaluators.result import Status
from tests.cluster._evals import drain, request

pytestmark = pytest.mark.ray


def test_each_class_runs_on_its_own_node(two_nodes):
    d = Dispatcher(["cpu", "fakegpu"], "tests.cluster._evals:scripted", rescan_s=0.5)
    try:
        for i in range(6):
            d.submit(f"c{i}", request(f"sleep 0.05\n# {i}"), "cpu")
            d.submit(f"g{i}", request(f"sleep 0.05\n# {i}"), "fakegpu")
        assert d.capacity() == {"cpu": 1, "fakegpu": 1}
        got = drain(d)
    finally:
        d.shutdown()
    assert sorted(k for k, _, _ in got) == sorted([f"c{i}" for i in range(6)] + [f"g{i}" for i in range(6)])
    for key, hw, result in got:
        assert result.status is Status.ACCEPTED
        expected = two_nodes.head_id if hw == "cpu" else two_nodes.gpu_id
        assert key[0] == {"cpu": "c", "fakegpu": "g"}[hw]
        assert result.provenance["ran_on"] == expected
        assert result.provenance["cluster"]["node_id"] == expected
        assert result.provenance["cluster"]["hardware"] == hw
        assert result.provenance["cluster"]["device_name"]
    # one actor per device: every evaluation of a class came from one process
    assert len({r.provenance["pid"] for _, hw, r in got if hw == "fakegpu"}) == 1


def test_precheck_rejects_before_any_device_time(two_nodes):
    d = Dispatcher(["fakegpu"], "tests.cluster._evals:scripted", precheck_path="tests.cluster._evals:precheck",
                   rescan_s=0.5)
    try:
        d.submit("good", request("sleep 0.01"), "fakegpu")
        d.submit("bad", request("bad"), "fakegpu")
        got = {k: r for k, _, r in drain(d)}
    finally:
        d.shutdown()
    assert got["good"].status is Status.ACCEPTED
    assert got["good"].provenance["ran_on"] == two_nodes.gpu_id
    assert got["bad"].status is Status.STATIC_VIOLATION
    # the fakegpu node has no CPU: the cheap check ran on the head, and never reached the device
    assert got["bad"].reason == f"precheck node={two_nodes.head_id}"
    assert "cluster" not in got["bad"].provenance


def test_a_key_is_accepted_once_and_targets_are_checked(two_nodes):
    d = Dispatcher(["cpu"], "tests.cluster._evals:null", rescan_s=0.5)
    try:
        d.submit("k", request(), "cpu")
        with pytest.raises(ValueError, match="already submitted"):
            d.submit("k", request(), "cpu")
        with pytest.raises(ValueError, match="not a target.*targets: cpu"):
            d.submit("k2", request(), "fakegpu")
        assert d.in_flight() == {"k"}
        assert [k for k, _, _ in drain(d)] == ["k"]
        assert d.in_flight() == set()
        with pytest.raises(ValueError, match="already submitted"):
            d.submit("k", request(), "cpu")
    finally:
        d.shutdown()
