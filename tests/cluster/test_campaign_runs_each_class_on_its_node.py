"""A campaign with two target classes on a real two-node Ray: each class's evaluations run on the node that offers
it, each candidate is evaluated once per class, and the population records where each ran."""
from pathlib import Path

import pytest

from cluster.dispatch import Dispatcher
from search.campaign import Campaign
from search.config import load_config
from search.population import read_population

pytestmark = pytest.mark.ray


def test_two_class_campaign_places_every_evaluation_on_its_classs_node(two_nodes, tmp_path: Path) -> None:
    from tests.cluster.conftest import RAY_TMP, STORE_BYTES
    # a CUDA evaluator takes the GPU and the one CPU that feeds it
    node = two_nodes.cluster.add_node(num_cpus=1, num_gpus=1, resources={"hw:h200": 1},
                                      object_store_memory=STORE_BYTES, temp_dir=str(RAY_TMP))
    try:
        (tmp_path / "double.py").write_text("import torch\nclass Model(torch.nn.Module):\n    def forward(self, x):\n"
                                            "        return 2 * x\ndef get_inputs():\n    return [torch.randn(4)]\n"
                                            "def get_init_inputs():\n    return []\n")
        cands = tmp_path / "cands"
        cands.mkdir()
        for i in range(4):
            # directives for the scripted evaluator of these tests (tests/cluster/_evals.py)
            (cands / f"double__{i}.py").write_text(f"sleep 0.05\n# candidate {i}\n")
        toml = tmp_path / "c.toml"
        toml.write_text('[campaign]\nname = "two"\nout = "run"\n[budget]\nmax_evaluations = 8\nmax_minutes = 5\n'
                        '[[problems]]\npath = "double.py"\n[[targets]]\nhardware = "cpu"\n'
                        '[[targets]]\nhardware = "h200"\n'
                        '[[proposers]]\nkind = "files"\ndir = "cands"\nper_generation = 4\n')
        cfg = load_config(toml)
        factory = lambda cfg: Dispatcher(["cpu", "h200"], "tests.cluster._evals:scripted", rescan_s=0.5)  # noqa: E731
        progress = Campaign(cfg, tmp_path / "run", dispatcher_factory=factory).run()
        table = read_population(tmp_path / "run")
        assert progress.done == 8 and table.num_rows == 8
        rows = table.to_pylist()
        for hw, node_id in (("cpu", two_nodes.head_id), ("h200", node.node_id)):
            mine = [r for r in rows if r["hardware"] == hw]
            assert len(mine) == 4
            assert {r["node_id"] for r in mine} == {node_id}
        assert len({r["eval_key"] for r in rows}) == 8
    finally:
        two_nodes.cluster.remove_node(node)


def test_a_gpus_verify_slots_keep_their_build_cores_from_the_cheap_checks(two_nodes) -> None:
    """A GPU's evaluator builds or verifies every evaluation it holds (verify slots and builds ahead) at once, each
    on a core of its host: the cheap checks get the CPUs left after those, not after the actor's one CPU only."""
    import ray

    from tests.cluster.conftest import RAY_TMP, STORE_BYTES
    node = two_nodes.cluster.add_node(num_cpus=4, num_gpus=1, resources={"hw:h200": 1},
                                      object_store_memory=STORE_BYTES, temp_dir=str(RAY_TMP))
    try:
        total = int(ray.cluster_resources().get("CPU", 0))
        d = Dispatcher(["h200"], "tests.cluster._evals:scripted", precheck_path="tests.cluster._evals:scripted",
                       verify_slots={"h200": 3}, build_ahead={"h200": 1}, rescan_s=0.5)
        try:
            assert d._sched.max_prechecks == total - 4     # three verifying and one building
        finally:
            d.shutdown()
    finally:
        two_nodes.cluster.remove_node(node)
