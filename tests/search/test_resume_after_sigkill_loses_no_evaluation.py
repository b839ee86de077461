"""Killing the campaign driver and everything it started (SIGKILL) at random moments, then resuming, ends with
every candidate evaluated and recorded exactly once. Real Ray, real evaluator, real journal."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PROBLEM = '''
import torch
import torch.nn as nn

n = 64


class Model(nn.Module):
    def forward(self, x):
        return x * 2.0


def get_inputs():
    return [torch.randn(n)]


def get_init_inputs():
    return []
'''

BODIES = ["x * 2.0", "x + x", "2.0 * x", "torch.mul(x, 2.0)", "x.mul(2.0)"]


def _candidate(body: str) -> str:
    return ("import torch\nimport torch.nn as nn\n\n\nclass ModelNew(nn.Module):\n"
            f"    def forward(self, x):\n        return {body}\n")


def _campaign(tmp: Path) -> Path:
    (tmp / "problems").mkdir()
    (tmp / "problems" / "double.py").write_text(PROBLEM)
    cands = tmp / "cands"
    cands.mkdir()
    for i, body in enumerate(BODIES):
        (cands / f"double__{i}.py").write_text(_candidate(body))
    toml = tmp / "campaign.toml"
    toml.write_text(f"""
[campaign]
name = "killed"
out = "run"

[budget]
max_evaluations = {len(BODIES)}
max_minutes = 30

[[problems]]
path = "problems/double.py"

[[targets]]
hardware = "cpu"

[[proposers]]
kind = "files"
dir = "cands"
per_generation = 2

[timing]
time_cap_s = 0.3
min_samples = 5
baselines = ["eager"]

[verify]
timeout_s = 120
""")
    return toml


def _kill_everything(proc: subprocess.Popen, ray_dir_tag: str) -> None:
    """SIGKILL the driver's session, then anything of its Ray left outside it (found by its temp dir)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(ray_dir_tag in part for part in (p.info["cmdline"] or [])):
                p.kill()
        except psutil.Error:
            pass


def _raw_keys(run_dir: Path) -> list[str]:
    """Every row the journal holds, without the read-side deduplication."""
    keys: list[str] = []
    for part in sorted((run_dir / "population").glob("*.parquet")):
        keys += pq.read_table(part, columns=["eval_key"]).column("eval_key").to_pylist()
    return keys


def test_sigkill_at_random_points_then_resume_records_each_evaluation_once(tmp_path: Path) -> None:
    toml = _campaign(tmp_path)
    run_dir = tmp_path / "run"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    kswarm = [sys.executable, "-m", "kswarm.cli"]
    from search.campaign import _ray_temp_dir
    rng = random.Random(1234)
    kills = 0
    cmd = kswarm + ["run", str(toml)]
    for _ in range(2):                      # two kills (at 19.5 s and 11.6 s of a run), then a resume to the end
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(5.0, 20.0))   # the driver's start, a Ray start and evaluations
        if proc.poll() is None:
            _kill_everything(proc, Path(_ray_temp_dir(run_dir)).name)
            kills += 1
        cmd = kswarm + ["resume", str(run_dir)]
        if len(set(_raw_keys(run_dir))) == len(BODIES):
            break
    final = subprocess.run(kswarm + ["resume", str(run_dir)], env=env, capture_output=True, text=True,
                           timeout=900, start_new_session=True)
    assert final.returncode == 0, final.stderr[-2000:]
    keys = _raw_keys(run_dir)
    assert kills >= 1, "the driver finished before any kill; the test proved nothing"
    assert len(keys) == len(set(keys)), f"an evaluation was recorded twice: {sorted(keys)}"
    assert len(keys) == len(BODIES), f"expected {len(BODIES)} evaluations, journal holds {len(keys)}"
    from search.population import read_population
    table = read_population(run_dir)
    assert set(table.column("status").to_pylist()) == {"accepted"}
