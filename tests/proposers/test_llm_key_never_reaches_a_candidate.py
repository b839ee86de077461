"""The API key never reaches a candidate's process: with ANTHROPIC_API_KEY (and OPENAI_API_KEY) set where the
evaluator runs, a candidate that reads its own environment through the real evaluator sees neither. The same
candidate does see a variable the sandbox passes on (PATH), so the check can fail."""
from __future__ import annotations

from pathlib import Path

import pytest

from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy
from llm_loopback import LEAKY_RELU, leaky_module

pytestmark = pytest.mark.slow


def _reads_env(name: str) -> str:
    # wrong by a mile when the variable is visible, exact when it is not
    return leaky_module(f"torch.nn.functional.leaky_relu(x, self.negative_slope) + (1000.0 if os.environ.get("
                        f"{name!r}) else 0.0)", header="import os")


def _verdict(name: str, cache: Path, problem: Path) -> str:
    req = EvalRequest(problem_path=str(problem), candidate_source=_reads_env(name), device="cpu", mode="verify",
                      verify=VerifyPolicy(static="warn", trials=1, probes=(), timeout_s=120),
                      timing=TimingPolicy(), cache_dir=str(cache))
    return evaluate(req).status.value


def test_a_candidate_sees_no_api_key(monkeypatch, kswarm_cache_dir: Path, tmp_path: Path) -> None:
    problem = tmp_path / "leaky_relu.py"        # the suite's problem at a small size: the point is the environment
    problem.write_text(Path(LEAKY_RELU).read_text().replace("batch_size = 2048", "batch_size = 16")
                       .replace("dim = 2048", "dim = 64"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-must-not-leak")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    assert _verdict("ANTHROPIC_API_KEY", kswarm_cache_dir, problem) == "accepted"
    assert _verdict("OPENAI_API_KEY", kswarm_cache_dir, problem) == "accepted"
    assert _verdict("PATH", kswarm_cache_dir, problem) == "mismatch"       # the probe itself works
