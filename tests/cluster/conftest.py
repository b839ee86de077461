"""A real two-node Ray for the cluster tests: a head offering ``hw:cpu`` and a node offering ``hw:fakegpu``.

One ``ray.cluster_utils.Cluster`` serves the whole session; tests that need more nodes add and remove their own.
Everything Ray writes goes under one short folder of the system temp dir, named by the checkout, so that Ray's
socket paths stay within the limit however deep the checkout lives; the repository's ignored ``tmp/ray-temp``
records where it is.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from cluster.tempdirs import short_temp_dir

REPO = Path(__file__).resolve().parents[2]
RAY_ROOT = Path(short_temp_dir(str(REPO), prefix="ksw-test"))
RAY_TMP = RAY_ROOT / "ray"
STORE_BYTES = 100 * 2**20

# The tests are an entry point: this is where the environment is decided.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@dataclasses.dataclass
class TwoNodes:
    cluster: object
    head_id: str
    gpu_id: str

    def add_node(self, **resources: float):
        """A further node with no CPU and the given custom resources; the caller removes it."""
        return self.cluster.add_node(num_cpus=0, resources=resources, object_store_memory=STORE_BYTES,
                                     temp_dir=str(RAY_TMP))


def worker_pythonpath() -> str:
    """The repository ahead of the PYTHONPATH the workers would inherit (on some hosts Ray itself lives there)."""
    return os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))


@pytest.fixture(scope="session")
def two_nodes():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    RAY_TMP.mkdir(parents=True, exist_ok=True)
    (REPO / "tmp").mkdir(exist_ok=True)
    (REPO / "tmp" / "ray-temp").write_text(f"{RAY_ROOT}\n")
    # Cluster() records its address in Ray's default temp dir; keep that file in ours too.
    old_tmp = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(RAY_TMP.parent)
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 2, "resources": {"hw:cpu": 1}, "object_store_memory": STORE_BYTES,
            "temp_dir": str(RAY_TMP), "include_dashboard": False})
    finally:
        if old_tmp is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old_tmp
    try:
        gpu = cluster.add_node(num_cpus=0, resources={"hw:fakegpu": 1}, object_store_memory=STORE_BYTES,
                               temp_dir=str(RAY_TMP))
        ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": worker_pythonpath()}},
                 logging_level="WARNING")
        yield TwoNodes(cluster=cluster, head_id=cluster.head_node.node_id, gpu_id=gpu.node_id)
    finally:
        ray.shutdown()
        cluster.shutdown()
