"""``[sandbox]`` in a campaign file sets the limits of each candidate's process tree (wall clock, memory,
processes, file size, CPU time); they reach every evaluation request the campaign builds, and what is not set keeps the
verify policy's defaults."""
from __future__ import annotations

from pathlib import Path

import pytest

from evaluators.policy import VerifyPolicy
from search.config import ConfigError, load_config
from search.snapshot import config_from_dict, config_to_dict

CAMPAIGN = """[campaign]
name = "limits"
[budget]
max_evaluations = 2
max_minutes = 1
[[problems]]
path = "add_one.py"
[[targets]]
hardware = "cpu"
[[proposers]]
kind = "rewrites"
"""
PROBLEM = """import torch
import torch.nn as nn
class Model(nn.Module):
    def forward(self, x):
        return x + 1
def get_inputs():
    return [torch.randn(4)]
def get_init_inputs():
    return []
"""


def load(tmp_path: Path, extra: str):
    (tmp_path / "add_one.py").write_text(PROBLEM)
    (tmp_path / "c.toml").write_text(CAMPAIGN + extra)
    return load_config(tmp_path / "c.toml")


def test_sandbox_limits_reach_every_evaluation_request(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[sandbox]\nwall_clock_s = 120\nmemory_mb = 2048\nmax_processes = 4\nmax_file_mb = 64\n"
                         "cpu_time_s = 90\n")
    req = cfg.bench_request(str(tmp_path / "add_one.py"), "src", "cpu", "default", tmp_path / "cache", rounds=1)
    assert (req.verify.timeout_s, req.verify.memory_mb, req.verify.max_processes, req.verify.max_file_mb,
            req.verify.cpu_time_s) == (120.0, 2048, 4, 64, 90.0)
    assert config_from_dict(config_to_dict(cfg)).verify == cfg.verify      # a resume keeps them


def test_unset_limits_keep_the_safe_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[sandbox]\nmax_processes = 2\n")
    d = VerifyPolicy()
    assert cfg.verify.max_processes == 2
    assert (cfg.verify.timeout_s, cfg.verify.memory_mb, cfg.verify.max_file_mb, cfg.verify.cpu_time_s) == \
        (d.timeout_s, d.memory_mb, d.max_file_mb, None)     # None: the CPU-time limit follows the wall clock


@pytest.mark.parametrize("extra, key", [
    ("[sandbox]\nmemory_mb = 0\n", "sandbox.memory_mb"),
    ("[sandbox]\nwall_clock_s = -1\n", "sandbox.wall_clock_s"),
    ("[sandbox]\nmax_file_mb = 9999999999999999\n", "sandbox.max_file_mb"),
    ("[sandbox]\nmax_processes = \"4\"\n", "sandbox.max_processes"),
    ("[sandbox]\ncpu_time_s = -10\n", "sandbox.cpu_time_s"),
    ("[sandbox]\ncpu_time_s = 0\n", "sandbox.cpu_time_s"),
    ("[sandbox]\ncpu_time_s = \"10\"\n", "sandbox.cpu_time_s"),
    ("[sandbox]\ncpu_time_s = inf\n", "sandbox.cpu_time_s"),
    ("[sandbox]\ncpu_time_s = 10\n[verify]\ncpu_time_s = 20\n", "sandbox.cpu_time_s"),
    ("[verify]\ncpu_time_s = -1\n", "verify.cpu_time_s"),
    ("[sandbox]\nmemory_mb = 1024\n[verify]\nmemory_mb = 2048\n", "sandbox.memory_mb"),
    ("[verify]\ntimeout_s = 0\n", "verify.timeout_s"),
    ("[verify]\nmax_file_mb = -3\n", "verify.max_file_mb"),
])
def test_bad_limits_name_their_key(tmp_path: Path, extra: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(tmp_path, extra)
