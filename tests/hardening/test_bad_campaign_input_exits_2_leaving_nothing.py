"""``kswarm run`` on a bad campaign file exits 2 with one line and no traceback, and creates no campaign directory;
a directory left by a start that failed before its first evaluation does not block the corrected campaign."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from search.checkpoint import BACKUP_FILE, CHECKPOINT_FILE, Checkpoint, save_checkpoint
from search.config import ConfigError, load_config
from search.snapshot import forget_unstarted, load_snapshot, write_snapshot
from search.journal import ParquetJournal
from search.population import Population
from rows import row

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
CAMPAIGN = """[campaign]
name = "c"
out = "out"
[budget]
max_evaluations = 2
max_minutes = 1
[[problems]]
path = "{problem}"
[[targets]]
hardware = "{hardware}"
[[proposers]]
kind = "rewrites"
"""


def kswarm(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "kswarm"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "kswarm.cli"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled", "COLUMNS": "300"}, stdin=subprocess.DEVNULL)


def assert_one_line_exit_2(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "add_one.py").write_text(PROBLEM)
    (tmp_path / "broken.py").write_text(PROBLEM + "def get_more(:\n")
    return tmp_path


BAD = [
    pytest.param(random.Random(1).randbytes(300), "UTF-8", id="random_bytes"),
    pytest.param(b"\x00\x01[campaign\xff", "UTF-8", id="binary_header"),
    pytest.param(CAMPAIGN.format(problem="add_one.py", hardware="cpu").encode() + b'"[/]" = 1\n', "[/]",
                 id="markup_in_a_key"),
    pytest.param(CAMPAIGN.format(problem="add_one.py", hardware="cpu").replace("max_minutes = 1", "max_minutes = nan")
                 .encode(), "budget.max_minutes", id="nan"),
    pytest.param(CAMPAIGN.format(problem="broken.py", hardware="cpu").encode(), "broken.py", id="broken_problem"),
    pytest.param(CAMPAIGN.format(problem="add_one.py", hardware="cpu").replace('name = "c"', 'name = "../.."')
                 .encode(), "campaign.name", id="name_escapes_runs"),
    pytest.param(CAMPAIGN.format(problem="add_one.py", hardware="cpu").encode() + b"[sandbox]\ncpu_time_s = -5\n",
                 "sandbox.cpu_time_s", id="negative_cpu_time"),
    pytest.param(CAMPAIGN.format(problem="add_one.py", hardware="cpu").encode() + b'[sandbox]\ncpu_time_s = "1h"\n',
                 "sandbox.cpu_time_s", id="cpu_time_as_text"),
]


@pytest.mark.parametrize("content, needle", BAD)
def test_kswarm_run_on_a_bad_campaign_file_exits_2_and_writes_nothing(folder: Path, content: bytes,
                                                                      needle: str) -> None:
    (folder / "c.toml").write_bytes(content)
    assert_one_line_exit_2(kswarm("run", str(folder / "c.toml"), cwd=folder), "c.toml", needle)
    assert not (folder / "out").exists()


def test_kswarm_resume_of_a_damaged_snapshot_exits_2(folder: Path) -> None:
    (folder / "run").mkdir()
    (folder / "run" / "campaign.json").write_text(json.dumps([1, 2]))
    assert_one_line_exit_2(kswarm("resume", str(folder / "run"), cwd=folder), "damaged campaign snapshot")


def _config(folder: Path, hardware: str):
    (folder / f"{hardware}.toml").write_text(CAMPAIGN.format(problem="add_one.py", hardware=hardware))
    return load_config(folder / f"{hardware}.toml")


def test_a_failed_start_takes_its_snapshot_back(folder: Path) -> None:
    write_snapshot(_config(folder, "h100"), folder / "out")
    (folder / "out" / "population").mkdir()
    (folder / "out" / "population" / ".writer.lock").write_text("123")    # left by the driver that gave up
    with pytest.raises(ConfigError, match="never started"):
        write_snapshot(_config(folder, "cpu"), folder / "out")
    assert forget_unstarted(folder / "out")
    write_snapshot(_config(folder, "cpu"), folder / "out")
    assert [t.hardware for t in load_snapshot(folder / "out").targets] == ["cpu"]


def test_kswarm_run_with_no_device_of_its_class_leaves_no_campaign_behind(folder: Path) -> None:
    # --local: the same start-up failure as with Ray (no device of the class), without starting Ray
    (folder / "c.toml").write_text(CAMPAIGN.format(problem="add_one.py", hardware="h100"))
    assert_one_line_exit_2(kswarm("run", str(folder / "c.toml"), "--local", cwd=folder, timeout=300), "h100")
    assert not (folder / "out" / "campaign.json").exists()
    (folder / "c.toml").write_text(CAMPAIGN.format(problem="add_one.py", hardware="cpu"))
    write_snapshot(load_config(folder / "c.toml"))     # the corrected file is not refused as a different campaign


@pytest.mark.parametrize("started_by", ["checkpoint", "population", "live_driver"])
def test_a_campaign_that_started_is_never_replaced(folder: Path, started_by: str) -> None:
    run = folder / "out"
    write_snapshot(_config(folder, "h100"), run)
    journal = None
    if started_by == "checkpoint":
        save_checkpoint(run, Checkpoint())
    else:
        journal = ParquetJournal(run, writer=True)
        if started_by == "population":
            Population(journal).append([row("done")])
            journal.close()
    try:
        with pytest.raises(ConfigError, match="already holds a different campaign"):
            write_snapshot(_config(folder, "cpu"), run)
        assert not forget_unstarted(run)
    finally:
        if journal is not None:
            journal.close()
    assert [t.hardware for t in load_snapshot(run).targets] == ["h100"]


@pytest.mark.parametrize("command", [["status"], ["resume", "--local"]])
def test_a_campaign_whose_checkpoint_copies_are_both_damaged_is_one_line_exit_2(folder: Path, command) -> None:
    run = folder / "out"
    write_snapshot(_config(folder, "cpu"), run)
    save_checkpoint(run, Checkpoint(generations={"campaign": 2}))
    for name in (CHECKPOINT_FILE, BACKUP_FILE):
        (run / name).write_bytes(b'{"format": 1, "genera')
    line = assert_one_line_exit_2(kswarm(command[0], str(run), *command[1:], cwd=folder), "damaged checkpoint")
    assert "journal alone" in line
