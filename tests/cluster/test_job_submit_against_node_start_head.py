"""``ray job submit`` against a head started by ``kswarm node start --head``: the job joins and evaluates."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from cluster import hardware as hw
from cluster import node
from tests.cluster.conftest import RAY_TMP, REPO

pytestmark = pytest.mark.ray


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _wait_http(url, limit_s):
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


def test_job_submitted_to_a_node_start_head_evaluates_on_its_hardware():
    gcs, dash, agent, agent_grpc, env_agent, metrics, client = _free_ports(7)
    temp_dir = RAY_TMP.parent / "job"
    cpu = hw.devices_from_probe(hw.Probe(cpu=hw.probe_cpu()))
    # --block keeps `ray start` in the foreground, owning the head's processes: terminating it stops them all.
    cmd = node.node_start_command(
        head=True, address=None, resources=hw.hardware_resources(cpu), num_gpus=0, temp_dir=str(temp_dir),
        port=gcs, num_cpus=1, dashboard_port=dash, ray=node.ray_executable(),
        extra=["--block", f"--object-store-memory={100 * 2**20}", f"--dashboard-agent-listen-port={agent}",
               f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={env_agent}",
               f"--metrics-export-port={metrics}", f"--ray-client-server-port={client}"])
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '')}"
    head = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_http(f"http://127.0.0.1:{dash}/api/version", limit_s=90)
        job = subprocess.run(
            [node.ray_executable(), "job", "submit", "--address", f"http://127.0.0.1:{dash}",
             "--working-dir", str(REPO), "--", sys.executable, "tests/cluster/_job_entry.py"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        line = next(x for x in job.stdout.splitlines() if x.startswith("RESULT "))
        result = json.loads(line[len("RESULT "):])
        assert result == {"hardware": {"cpu": 1}, "keys": ["k0", "k1", "k2"], "statuses": ["accepted"]}
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
