"""``kswarm node start``: the ``ray start`` command line built from detected hardware."""
import json

import pytest

from cluster import hardware as hw
from cluster import node


def _resources(cmd):
    arg = next(a for a in cmd if a.startswith("--resources="))
    return json.loads(arg.split("=", 1)[1])


def test_head_command_carries_hardware_resources_and_local_dashboard():
    cmd = node.node_start_command(head=True, address=None, resources={"hw:h200": 2.0, "hw:cpu": 1.0}, num_gpus=2,
                                  temp_dir="/scratch/ray", port=6380, num_cpus=16)
    assert cmd[:3] == ["ray", "start", "--head"]
    assert _resources(cmd) == {"hw:cpu": 1, "hw:h200": 2}
    for flag in ("--num-gpus=2", "--num-cpus=16", "--port=6380", "--temp-dir=/scratch/ray",
                 "--dashboard-host=127.0.0.1", "--dashboard-port=8265", "--include-dashboard=true"):
        assert flag in cmd


def test_joining_node_takes_the_address_and_no_dashboard():
    cmd = node.node_start_command(head=False, address="10.0.0.1:6379", resources={"hw:cpu": 1}, num_gpus=0,
                                  extra=["--object-store-memory=1000000000"])
    assert "--address=10.0.0.1:6379" in cmd and "--head" not in cmd
    assert not any(a.startswith("--dashboard") for a in cmd)
    assert cmd[-1] == "--object-store-memory=1000000000"


@pytest.mark.parametrize("head,address,port", [(True, "x:1", None), (False, None, None), (False, "x:1", 6379)])
def test_inconsistent_roles_are_refused(head, address, port):
    with pytest.raises(ValueError):
        node.node_start_command(head=head, address=address, resources={}, port=port)


def test_dry_run_prints_the_command_for_detected_devices(capsys):
    assert node.node_start_cli(head=True, dry_run=True, num_cpus=2, dashboard_port=8300) == 0
    line = capsys.readouterr().out.strip()
    assert " start --head " in line and "--dashboard-port=8300" in line and '"hw:cpu": 1' in line


def test_cli_rejects_head_with_address(capsys):
    assert node.node_start_cli(head=True, address="x:1", dry_run=True) == 2
    assert "exactly one of --head or --address" in capsys.readouterr().err


def test_node_start_dry_run_runs_nothing():
    probe = hw.Probe(cpu=hw.CpuProbe("cpu", "x86_64"), cuda=(hw.CudaProbe("NVIDIA H200", 9, 0),))
    devices = hw.devices_from_probe(probe)
    cmd, code = node.node_start(head=False, address="head:6379", dry_run=True, devices=devices)
    assert code is None and "--num-gpus=1" in cmd and _resources(cmd) == {"hw:cpu": 1, "hw:h200": 1}


def test_a_temp_dir_too_long_for_rays_sockets_gets_one_clear_line():
    """A --temp-dir whose socket paths would pass the OS limit is refused at once (exit 2), not left to Ray,
    whose dashboard then fails and a job submission waits for it until its time-out."""
    import subprocess
    import sys
    from pathlib import Path

    from cluster.tempdirs import max_temp_dir_bytes
    deep = "/tmp/" + "d" * (max_temp_dir_bytes() - 4)     # one byte over
    proc = subprocess.run([sys.executable, "-m", "kswarm.cli", "node", "start", "--head", "--dry-run",
                           "--temp-dir", deep], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert deep in lines[0] and f"at most {max_temp_dir_bytes()} bytes" in lines[0]
    ok = "/tmp/" + "d" * (max_temp_dir_bytes() - 5)       # at the limit
    assert f"--temp-dir={ok}" in node.node_start_command(head=True, address=None, resources={}, temp_dir=ok)


def test_a_temp_dir_at_the_limit_holds_rays_longest_socket_path():
    from cluster.tempdirs import RAY_SUFFIX_BYTES, max_temp_dir_bytes, socket_path_limit
    longest = "/tmp/" + "d" * (max_temp_dir_bytes() - 5) + "/session_2026-12-02_03-31-03_293138_4194304" \
        + "/sockets/dash_PlatformEventsHead"
    assert len(longest.encode()) == socket_path_limit()
    assert RAY_SUFFIX_BYTES == len(longest) - max_temp_dir_bytes()


def test_short_temp_dir_falls_back_to_tmp_when_the_system_temp_dir_is_deep(tmp_path, monkeypatch):
    import tempfile

    from cluster.tempdirs import max_temp_dir_bytes, short_temp_dir
    deep = tmp_path / ("x" * 60)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    got = short_temp_dir(str(deep), prefix="ksw-probe")
    try:
        assert got.startswith("/tmp/ksw-probe-") and len(got.encode()) <= max_temp_dir_bytes()
    finally:
        import os
        os.rmdir(got)


def test_the_node_runs_with_this_installations_bin_first_on_its_path():
    import os
    import sys
    here = os.path.dirname(sys.executable)
    env = node.node_env({"PATH": f"/usr/bin{os.pathsep}{here}{os.pathsep}/bin", "HOME": "/h"})
    assert env["PATH"].split(os.pathsep) == [here, "/usr/bin", "/bin"] and env["HOME"] == "/h"
