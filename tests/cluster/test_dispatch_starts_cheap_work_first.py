"""Work waiting for a device starts lowest priority first, ties in arrival order; a campaign ranks candidates by
how long they take to evaluate."""
import pytest

from cluster.dispatch import Dispatcher
from proposers.base import Candidate
from search.campaign import cost_rank
from tests.cluster._evals import drain, request


@pytest.mark.ray
def test_one_device_takes_the_lowest_priority_first(two_nodes) -> None:
    d = Dispatcher(["cpu"], "tests.cluster._evals:scripted", rescan_s=0.5)     # one cpu actor, one at a time
    try:
        for key, prio in (("a", 2), ("b", 0), ("c", 1), ("d", 0), ("e", 2)):
            d.submit(key, request(f"# {key}\n"), "cpu", priority=prio)
        assert [k for k, _, _ in drain(d)] == ["b", "d", "c", "a", "e"]
    finally:
        d.shutdown()


def test_cost_rank_puts_plain_torch_before_kernels_before_the_compiler() -> None:
    c = lambda backend, **params: Candidate(source="x", backend=backend, params=params)  # noqa: E731
    ranks = [cost_rank(c("torch")), cost_rank(c("triton")), cost_rank(c("cpp")), cost_rank(c("compile", compile={})),
             cost_rank(c("compile", compile={"max_autotune": True}))]
    assert ranks == [0, 1, 1, 2, 3]
