"""The same campaign through an OpenAI-compatible endpoint (a vLLM or llama.cpp server, here the loopback's
``/v1/chat/completions``) on a real local Ray:

- a candidate that reads its own environment runs in the real evaluator and sees neither API key, though both are
  set where the campaign runs;
- a candidate that fails to build goes to the fixer, and the fixed one is evaluated;
- the campaign's token budget stops the proposer (the server reports 1,100 tokens an answer; the budget allows
  four answers), and the campaign ends there, before its evaluation budget.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_loopback import Loopback, fenced, leaky_module
from test_llm_campaign_anthropic import BROKEN, FIXED, REPO, tiny_problem

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# exact when neither key is visible to the candidate, off by 1000 when one is
ENV_PROBE = leaky_module("torch.nn.functional.leaky_relu(x, self.negative_slope) + (1000.0 if os.environ.get("
                         "'ANTHROPIC_API_KEY') or os.environ.get('OPENAI_API_KEY') else 0.0)", header="import os")


def _reply(role: str, prompt: str, body: dict) -> str:
    if role == "fixer":
        return fenced(FIXED)
    attempt = int(prompt.split("(attempt ")[1].split(")")[0])
    return fenced({1: ENV_PROBE, 2: BROKEN}.get(attempt) or leaky_module(f"torch.where(x > 0, x, x * "
                                                                          f"self.negative_slope) + 0 * {attempt}"))


def test_openai_compatible_campaign(tmp_path: Path) -> None:
    with Loopback(_reply) as lb:
        lb.fixed_usage = (1000, 100)
        lb.faults = ["429", "500"]
        toml = tmp_path / "campaign.toml"
        toml.write_text(f"""
[campaign]
name = "llm-openai"
out = "run"

[budget]
max_evaluations = 8
max_minutes = 20
max_tokens = 3500

[[problems]]
path = "{tiny_problem(tmp_path)}"

[[targets]]
hardware = "cpu"
build_ahead = 0    # one evaluation at a time: the request counts below follow the feed one by one

[[proposers]]
kind = "llm"
provider = "openai"
base_url = "{lb.url}/v1"
model = "qwen2.5-coder-32b"
roles = ["coder", "fixer"]
concurrency = 1
per_generation = 1
timeout_s = 5.0

[timing]
time_cap_s = 0.3
min_samples = 5
baselines = ["eager"]

[verify]
trials = 1
timeout_s = 120
static = "warn"
""")
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "ANTHROPIC_API_KEY": "sk-ant-must-not-leak",
               "OPENAI_API_KEY": "sk-openai-must-not-leak"}
        env.pop("RAY_ADDRESS", None)
        done = subprocess.run([sys.executable, "-m", "kswarm.cli", "run", str(toml)], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=900, start_new_session=True)
        assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    assert [a["fault"] for a in lb.attempts[:2]] == ["429", "500"] and len(lb.answered) == 4
    assert all(a["api"] == "openai" for a in lb.attempts)
    assert lb.attempts[0]["headers"].get("authorization") == "Bearer sk-openai-must-not-leak"
    from search.population import read_population
    rows = read_population(run).to_pylist()
    assert len(rows) == 4 and {r["proposer"] for r in rows} == {"llm"}, [(r["status"], r["reason"]) for r in rows]
    by_attempt = {}
    for r in rows:
        meta = json.loads(r["params"])["llm"]
        assert meta["model"] == "qwen2.5-coder-32b" and meta["input_tokens"] == 1000
        by_attempt[meta["role"], r["source"].count("os.environ")] = r
    probe = by_attempt["coder", 2]
    assert probe["status"] == "accepted", probe["reason"]          # no key in the candidate's environment
    assert any("environ" in f for f in probe["static_flags"])     # the finding was recorded (static = "warn")
    broken = [r for r in rows if r["status"] == "compile_error"]
    fixed = by_attempt["fixer", 0]
    assert len(broken) == 1 and fixed["status"] == "accepted" and fixed["parent_ids"] == [broken[0]["candidate_id"]]
    log = (run / "logs" / "campaign.log").read_text()
    assert "llm proposer stops: token budget reached (4400 of 3500 tokens in 4 requests)" in log
    assert "search exhausted" in done.stdout + done.stderr
    prompt = lb.answered[-1]["body"]["messages"]
    assert prompt[0]["role"] == "system" and "Hardware class 'cpu'" in prompt[0]["content"]
