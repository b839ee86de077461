"""The README's cluster path: ``kswarm node start --head``, then ``ray job submit ... -- kswarm run`` of the
quickstart campaign, which joins the head, evaluates on its ``hw:cpu`` device and leaves its directory behind.
The campaign is the quickstart's file cut to its first problem and two evaluations (the whole quickstart took
four minutes of a CI run; ``make run`` runs it whole).

Neither the head nor the job has the virtual environment on its PATH: ``kswarm node start`` puts its own
interpreter's ``bin`` first on the node's PATH, and that is how the job finds ``kswarm``."""
import os
import subprocess
import sys

import psutil
import pytest

from search.population import read_population
from tests.cluster.conftest import RAY_TMP, REPO
from tests.cluster.test_job_submit_against_node_start_head import _free_ports, _wait_http

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _path_without(folder: str) -> str:
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and os.path.realpath(p) != os.path.realpath(folder))


def _node_processes(temp_dir: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in a for a in p.info["cmdline"] or ()):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _short_quickstart(tmp_path) -> str:
    """The quickstart campaign with its first problem only and two evaluations, its paths made absolute."""
    source = REPO / "experiments" / "campaigns" / "quickstart.toml"
    text = source.read_text()
    first = text.index("[[problems]]")
    rest = text.index("[[targets]]")
    problem = text[first:rest].split("[[problems]]")[1]
    path = problem.split('"')[1]
    assert "max_evaluations = 8" in text, "the quickstart's budget changed: update this test"
    text = (text[:first] + "[[problems]]\n" + f'path = "{(source.parent / path).resolve()}"\n\n' + text[rest:])
    text = text.replace("max_evaluations = 8", "max_evaluations = 2")
    out = tmp_path / "quickstart.toml"
    out.write_text(text)
    return str(out)


def test_ray_job_submit_of_the_quickstart_against_a_node_start_head(tmp_path):
    gcs, dash, agent, agent_grpc, env_agent, metrics, client = _free_ports(7)
    venv_bin = os.path.dirname(sys.executable)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "VIRTUAL_ENV")}
    env["RAY_AUTH_MODE"] = "disabled"
    env["PATH"] = _path_without(venv_bin)
    probe = subprocess.run(["sh", "-c", "command -v kswarm || true"], env=env, capture_output=True, text=True)
    assert probe.stdout.strip() == "", "the test needs a PATH without kswarm on it"
    temp_dir = str(RAY_TMP.parent / f"qs{gcs}")      # this test's own: its processes are found by it
    # `kswarm node start --head`, kept in the foreground (--block, passed through to ray start) so that the test
    # owns the head's processes, on ports of its own
    head = subprocess.Popen(
        [sys.executable, "-m", "kswarm.cli", "node", "start", "--head", "--port", str(gcs),
         "--dashboard-port", str(dash), "--num-cpus", "2", "--temp-dir", temp_dir, "--",
         "--block", f"--object-store-memory={100 * 2**20}", f"--dashboard-agent-listen-port={agent}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={env_agent}",
         f"--metrics-export-port={metrics}", f"--ray-client-server-port={client}"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out_dir = tmp_path / "quickstart"
    try:
        _wait_http(f"http://127.0.0.1:{dash}/api/version", limit_s=90)
        job = subprocess.run(
            [os.path.join(venv_bin, "ray"), "job", "submit", "--address", f"http://127.0.0.1:{dash}",
             "--working-dir", str(REPO), "--", "kswarm", "run", _short_quickstart(tmp_path),
             "--out", str(out_dir)],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        table = read_population(out_dir)
        # at most its 2 evaluations; fewer where its 8 minutes ran out first (a loaded machine)
        assert 1 <= table.num_rows <= 2
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
        _, alive = psutil.wait_procs(_node_processes(temp_dir), timeout=30)
        left = [p.pid for p in alive]
        for p in alive:
            p.kill()
    # kswarm node start became ray start, so stopping it stopped the whole node
    assert not left, f"node processes left running after kswarm node start was stopped: {left}"
