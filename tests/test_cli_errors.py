"""The ``kswarm`` console script: bad input exits 2 with one line and no traceback; a verdict exits 0 or 1 with
the documented JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

PROBLEM = """\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return x * 2.0


def get_inputs():
    return [torch.randn(8)]


def get_init_inputs():
    return []
"""

HONEST = """\
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        return x + x
"""

WRONG = HONEST.replace("x + x", "x * 3.0")
RESULT_KEYS = {"verdict", "status", "reason", "max_abs_err", "max_rel_err", "candidate_ms", "eager_ms", "compile_ms",
               "speedup", "device"}


def kswarm_command() -> list[str]:
    script = Path(sys.executable).parent / "kswarm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kswarm.cli"]


def kswarm(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*kswarm_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ), stdin=subprocess.DEVNULL)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "problem.py").write_text(PROBLEM)
    (tmp_path / "honest.py").write_text(HONEST)
    (tmp_path / "wrong.py").write_text(WRONG)
    (tmp_path / "broken_problem.py").write_text(PROBLEM + "\ndef get_more(:\n    pass\n")
    (tmp_path / "broken_candidate.py").write_text(HONEST + "\n    return (\n")
    (tmp_path / "no_inputs.py").write_text(PROBLEM.replace("def get_inputs", "def make_inputs"))
    (tmp_path / "no_model_new.py").write_text(HONEST.replace("ModelNew", "Faster"))
    return tmp_path


BAD_INPUT = [
    pytest.param(["missing.py", "honest.py"], "missing.py", id="missing_problem"),
    pytest.param(["problem.py", "missing.py"], "missing.py", id="missing_candidate"),
    pytest.param(["broken_problem.py", "honest.py"], "broken_problem.py", id="problem_syntax_error"),
    pytest.param(["problem.py", "broken_candidate.py"], "broken_candidate.py", id="candidate_syntax_error"),
    pytest.param(["no_inputs.py", "honest.py"], "get_inputs", id="problem_lacks_get_inputs"),
    pytest.param(["problem.py", "no_model_new.py"], "ModelNew", id="candidate_lacks_model_new"),
    pytest.param(["problem.py", "honest.py", "--scale", "gigantic"], "gigantic", id="unknown_scale"),
    pytest.param(["problem.py", "honest.py", "--device", "tpu"], "tpu", id="unknown_device"),
    pytest.param(["problem.py", "honest.py", "--device", "cuda"], "cuda", id="cuda_without_cuda",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")),
]


@pytest.mark.parametrize("args,named", BAD_INPUT)
def test_bad_input_exits_2_with_one_line_and_no_traceback(files, kswarm_cache_dir, args, named):
    done = kswarm("verify", *args, "--cache-dir", str(kswarm_cache_dir), cwd=files, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {done.stderr!r}"
    assert named in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def test_honest_candidate_exits_0_with_the_documented_json(files, kswarm_cache_dir):
    done = kswarm("verify", "problem.py", "honest.py", "--json", "--cache-dir", str(kswarm_cache_dir), cwd=files)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert RESULT_KEYS <= set(result)
    assert result["verdict"] == "accepted" and result["status"] == "accepted"
    assert result["device"] == "cpu"
    assert result["max_abs_err"] == 0 and result["max_rel_err"] == 0
    assert "Traceback" not in done.stderr


def test_wrong_candidate_exits_1_and_is_rejected(files, kswarm_cache_dir):
    done = kswarm("verify", "problem.py", "wrong.py", "--json", "--cache-dir", str(kswarm_cache_dir), cwd=files)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["verdict"] == "rejected" and result["status"] == "mismatch"
    assert result["reason"].startswith("trial 1: output 0:")
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_bench_reports_times_and_a_speedup_inside_its_interval(files, kswarm_cache_dir):
    # one pair of processes (the default is 3): the spread over fresh pairs has its own tests
    # (tests/evaluators/test_timing_spread_over_fresh_processes.py); each pair here is a cold compile baseline more
    done = kswarm("bench", "problem.py", "honest.py", "--json", "--time-cap", "1", "--processes", "1",
                  "--cache-dir", str(kswarm_cache_dir), cwd=files, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout)
    for key in ("candidate_ms", "eager_ms", "compile_ms", "speedup"):
        assert isinstance(result[key], float) and result[key] > 0, (key, result[key])
    low, high = result["speedup_ci"]
    assert low <= result["speedup"] <= high
    # paired timing: the speedup is the median of the per-block ratios against the faster baseline, timed
    # alternately with the candidate
    timing = result["timing"]
    assert timing["method"] == "paired blocks" and timing["faster_baseline"] in ("eager", "compile")
    ratios = sorted(timing["block_ratios"])
    assert len(ratios) == timing["blocks"] >= 3
    mid = len(ratios) // 2
    median = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
    assert result["speedup"] == pytest.approx(median, rel=1e-3)     # the ratios are stored rounded to 4 places
    assert ratios[0] - 1e-3 <= low <= high <= ratios[-1] + 1e-3    # order statistics of those ratios
