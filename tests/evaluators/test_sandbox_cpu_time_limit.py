"""A candidate that spins past its CPU-time limit (RLIMIT_CPU, ``[sandbox] cpu_time_s``) is killed by the kernel in
its real sandbox child and gets a timeout whose reason names the limit and the key that raises it; the evaluator
lives on and nothing of the child is left. The wall clock is far away in these cases, so only the CPU-time limit
can end them."""
from __future__ import annotations

import textwrap
from pathlib import Path

import psutil
import pytest

from evaluators import limits as lim
from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, VerifyPolicy
from evaluators.result import Status

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
CPU_S = 8.0     # above a child's start-up (the torch import takes 2-3 CPU seconds), far below the wall clock


def candidate(forward: str, top: str = "") -> str:
    return ("import signal\nimport torch\nimport torch.nn as nn\n" + textwrap.dedent(top) + "\n\n"
            "class ModelNew(nn.Module):\n"
            "    def forward(self, x):\n" + textwrap.indent(textwrap.dedent(forward), " " * 8) + "\n")


@pytest.fixture(scope="module")
def problem(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cpu-problem") / "double.py"
    path.write_text(PROBLEM)
    return path


def run(problem: Path, source: str, cache_dir: Path, **policy):
    verify = VerifyPolicy(static="warn", seed=1, **{"timeout_s": 600.0, **policy})
    return evaluate(EvalRequest(problem_path=str(problem), candidate_source=source, device="cpu", mode="verify",
                                verify=verify, cache_dir=str(cache_dir)))


def sandbox_children() -> list[int]:
    left = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "evaluators.child" in " ".join(p.cmdline()):
                left.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return left


@pytest.mark.parametrize("top", [
    pytest.param("", id="killed_by_sigxcpu"),
    # SIGXCPU ignored: the kernel's hard limit, a few CPU seconds later, sends SIGKILL
    pytest.param("signal.signal(signal.SIGXCPU, signal.SIG_IGN)\n", id="sigxcpu_ignored_then_sigkill"),
])
def test_a_spinning_candidate_is_stopped_by_its_cpu_time_limit(problem, kswarm_cache_dir, top):
    result = run(problem, candidate("while True:\n    pass\n", top=top), kswarm_cache_dir, cpu_time_s=CPU_S)
    assert result.status is Status.TIMEOUT, result.reason
    assert "CPU-time limit of 8 s" in result.reason and "[sandbox] cpu_time_s" in result.reason, result.reason
    assert "wall-clock" not in result.reason
    assert result.policy["verify"]["cpu_time_s"] == CPU_S     # recorded with the result
    assert not sandbox_children()


def test_the_campaign_goes_on_after_a_cpu_time_kill(problem, kswarm_cache_dir):
    spun = run(problem, candidate("while True:\n    pass\n"), kswarm_cache_dir, cpu_time_s=CPU_S)
    honest = run(problem, candidate("return x * 2.0\n"), kswarm_cache_dir, cpu_time_s=60.0)
    assert spun.status is Status.TIMEOUT, spun.reason
    assert honest.status is Status.ACCEPTED, honest.reason
    assert honest.policy["cpu_time_s"] == 60     # the soft limit the child applied to itself


def test_the_default_follows_the_wall_clock_on_every_usable_cpu():
    req = EvalRequest(problem_path="p.py", candidate_source="", verify=VerifyPolicy(timeout_s=100.0))
    seconds, why = lim.cpu_time_limit(req)
    assert seconds == 2 * 100.0 * lim.usable_cpus()
    assert "verify.timeout_s" in why
    set_ = EvalRequest(problem_path="p.py", candidate_source="", verify=VerifyPolicy(cpu_time_s=30.0))
    assert lim.cpu_time_limit(set_) == (30.0, "set by [sandbox] cpu_time_s")
    limits = lim.sandbox_limits(req, memory=(1024, ""), timeout=(50.0, ""))
    assert limits.cpu_time_s == seconds and limits.cpu_time_s in limits.child_side()
