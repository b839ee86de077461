"""``ensure_ray``: joins what is there and shuts down only what it started."""
import os
import subprocess
import sys
import textwrap

import pytest

from tests.cluster.conftest import RAY_TMP, REPO, worker_pythonpath

pytestmark = pytest.mark.ray


def test_an_initialised_ray_is_left_alone(two_nodes):
    import ray
    from cluster.runtime import cluster_hardware, ensure_ray
    handle = ensure_ray()
    assert not handle.started_local and not handle.connected
    handle.shutdown()
    assert ray.is_initialized()
    assert cluster_hardware() == {"cpu": 1, "fakegpu": 1}


def test_joining_refuses_local_resources(two_nodes):
    import ray
    from cluster.runtime import ensure_ray
    ray.shutdown()
    try:
        with pytest.raises(ValueError, match="come from the cluster"):
            ensure_ray(address=two_nodes.cluster.address, resources={"hw:cpu": 1})
        handle = ensure_ray(address=two_nodes.cluster.address)
        assert handle.connected and not handle.started_local
    finally:
        if not ray.is_initialized():
            ray.init(address=two_nodes.cluster.address,
                     runtime_env={"env_vars": {"PYTHONPATH": worker_pythonpath()}})


def test_no_address_starts_a_local_ray_with_hardware_resources():
    # A separate process: this session's driver is already connected to the test cluster.
    script = textwrap.dedent(f"""
        import ray
        from cluster.runtime import cluster_hardware, ensure_ray
        h = ensure_ray(None, temp_dir={str(RAY_TMP)!r}, resources={{"hw:cpu": 1, "hw:extra": 2}}, num_cpus=1,
                       object_store_memory=80 * 2**20)
        assert h.started_local and h.connected
        print(sorted(cluster_hardware().items()))
        h.shutdown()
        assert not ray.is_initialized()
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": worker_pythonpath()})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "[('cpu', 1), ('extra', 2)]" in out.stdout
