"""The README's cluster path: ``kswarm node start --head``, then ``ray job submit ... -- kswarm run`` of the
quickstart campaign, which joins the head, evaluates on its ``hw:cpu`` device and leaves its directory behind."""
import os
import shlex
import subprocess
import sys

import pytest

from search.population import read_population
from tests.cluster.conftest import RAY_TMP, REPO
from tests.cluster.test_job_submit_against_node_start_head import _free_ports, _wait_http

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_ray_job_submit_of_the_quickstart_against_a_node_start_head(tmp_path):
    gcs, dash, agent, agent_grpc, env_agent, metrics, client = _free_ports(7)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '')}"
    kswarm = [sys.executable, "-m", "search.cli"]
    dry = subprocess.run(kswarm + ["node", "start", "--head", "--dry-run", "--port", str(gcs),
                                   "--dashboard-port", str(dash), "--num-cpus", "2",
                                   "--temp-dir", str(RAY_TMP.parent / "ray-quickstart-job")],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert '"hw:cpu": 1' in dry.stdout or "hw:cpu" in dry.stdout
    # the command `kswarm node start --head` runs, kept in the foreground so that the test owns its processes
    cmd = shlex.split(dry.stdout.strip()) + [
        "--block", f"--object-store-memory={100 * 2**20}", f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={env_agent}",
        f"--metrics-export-port={metrics}", f"--ray-client-server-port={client}"]
    head = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out_dir = tmp_path / "quickstart"
    try:
        _wait_http(f"http://127.0.0.1:{dash}/api/version", limit_s=90)
        job = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "ray"), "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(REPO), "--",
             sys.executable, "-m", "search.cli", "run", "experiments/campaigns/quickstart.toml",
             "--out", str(out_dir)],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        table = read_population(out_dir)
        assert table.num_rows == 8
        assert "accepted" in set(table.column("status").to_pylist())
        assert (out_dir / "export" / "manifest.md").exists()
        assert (out_dir / "report" / "report.html").exists()
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
