"""``kswarm node start``: ``ray start`` with this node's hardware classes as custom resources.

``node_start_command`` is pure: it builds the argument list from what it is given. ``node_start`` detects the
hardware and runs it. ``node_start_cli`` is the CLI's entry and the only function here that writes to the terminal.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

from cluster import hardware
from cluster.tempdirs import check_temp_dir

logger = logging.getLogger(__name__)

DEFAULT_DASHBOARD_HOST = "127.0.0.1"
DEFAULT_DASHBOARD_PORT = 8265


def ray_executable() -> str:
    """The ``ray`` script of the running interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "ray"
    if beside.exists():
        return str(beside)
    return shutil.which("ray") or "ray"


def _check_role(head: bool, address: str | None, port: int | None) -> None:
    if head == (address is not None):
        raise ValueError("give exactly one of --head or --address ADDR")
    if port is not None and not head:
        raise ValueError("--port is the head's port; a joining node takes the head's address instead")


def node_start_command(
    head: bool,
    address: str | None,
    resources: Mapping[str, float],
    num_gpus: int = 0,
    temp_dir: str | None = None,
    port: int | None = None,
    num_cpus: int | None = None,
    dashboard_host: str = DEFAULT_DASHBOARD_HOST,
    dashboard_port: int = DEFAULT_DASHBOARD_PORT,
    extra: Sequence[str] = (),
    ray: str = "ray",
) -> list[str]:
    """The ``ray start`` argument list for a head (``head=True``) or for a node joining ``address``.

    ``resources`` are the ``hw:<class>`` units (see ``hardware.hardware_resources``); ``port`` is the head's GCS
    port; the dashboard (and so the job API) options apply to a head only. ``extra`` is appended as given, for Ray's
    other options (``--object-store-memory``, ``--node-manager-port``, ...).
    """
    _check_role(head, address, port)
    cmd = [ray, "start"]
    if head:
        cmd += ["--head", "--include-dashboard=true", f"--dashboard-host={dashboard_host}",
                f"--dashboard-port={dashboard_port}"]
        if port is not None:
            cmd.append(f"--port={port}")
    else:
        cmd.append(f"--address={address}")
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    cmd.append(f"--num-gpus={num_gpus}")
    units = {k: int(v) if float(v).is_integer() else float(v) for k, v in sorted(resources.items())}
    cmd.append("--resources=" + json.dumps(units, separators=(", ", ": ")))
    if temp_dir is not None:
        cmd.append(f"--temp-dir={check_temp_dir(temp_dir)}")
    cmd.append("--disable-usage-stats")
    cmd += list(extra)
    return cmd


def node_start(
    head: bool,
    address: str | None,
    temp_dir: str | None = None,
    port: int | None = None,
    num_cpus: int | None = None,
    dashboard_host: str = DEFAULT_DASHBOARD_HOST,
    dashboard_port: int = DEFAULT_DASHBOARD_PORT,
    extra: Sequence[str] = (),
    dry_run: bool = False,
    devices: Sequence[hardware.Device] | None = None,
    replace_process: bool = False,
) -> tuple[list[str], int | None]:
    """Detect this node's devices (unless given) and run ``ray start`` for them.

    Returns the command and ``ray start``'s exit code, or ``None`` for the code on a dry run, which runs nothing.
    ``replace_process`` execs ``ray start`` in this process instead (the CLI does: a signal to ``kswarm node start
    -- --block`` then reaches Ray itself, which stops the node's processes), and so does not return.
    """
    _check_role(head, address, port)
    devices = hardware.detect_devices() if devices is None else devices
    cmd = node_start_command(
        head=head, address=address, resources=hardware.hardware_resources(devices),
        num_gpus=hardware.num_cuda(devices), temp_dir=temp_dir, port=port, num_cpus=num_cpus,
        dashboard_host=dashboard_host, dashboard_port=dashboard_port, extra=extra, ray=ray_executable())
    if dry_run:
        return cmd, None
    logger.info("running %s", shlex.join(cmd))
    if replace_process:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execvpe(cmd[0], cmd, node_env(os.environ))
    return cmd, subprocess.run(cmd, check=False, env=node_env(os.environ)).returncode


def node_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment ``ray start`` runs with: the caller's, with this interpreter's ``bin`` first on PATH. Ray's
    processes, and so the entrypoints of jobs submitted to this node, inherit it: ``ray job submit ... -- kswarm
    run ...`` then finds ``kswarm`` even where the node was started without activating its virtual environment."""
    here = str(Path(sys.executable).parent)
    rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != here]
    return {**env, "PATH": os.pathsep.join([here, *rest])}


def node_start_cli(
    head: bool = False,
    address: str | None = None,
    dry_run: bool = False,
    temp_dir: str | None = None,
    port: int | None = None,
    dashboard_port: int = DEFAULT_DASHBOARD_PORT,
    num_cpus: int | None = None,
    extra: Sequence[str] = (),
) -> int:
    """``kswarm node start``: returns the exit code (2 for bad options); a dry run prints the command line.
    ``extra`` goes to ``ray start`` as given (``--block``, ports, ``--object-store-memory``, ...)."""
    try:
        cmd, code = node_start(head=head, address=address, temp_dir=temp_dir, port=port, num_cpus=num_cpus,
                               dashboard_port=dashboard_port, extra=extra, dry_run=dry_run, replace_process=True)
    except ValueError as exc:    # TempDirTooLong included
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except OSError as exc:       # no ray to exec
        sys.stderr.write(f"error: could not run ray start ({exc}); install Ray in this environment "
                         f"(pip install 'ray[default]') or put its ray on PATH\n")
        return 2
    if dry_run:
        sys.stdout.write(shlex.join(cmd) + "\n")
        return 0
    return int(code or 0)
