"""A whole campaign with the LLM proposer on a real local Ray, through the real anthropic SDK, against the loopback
Messages API (which also serves 429, 529 and 500 faults and a reply slower than the timeout on the way):

- the prompts hold the problem source, the machine model, the parents with their speedups and their profiles;
- the candidates are evaluated and land in the population with proposer ``llm``, model, prompt hash and tokens;
- a candidate that fails to build goes to the fixer, and the fixed one is evaluated and accepted;
- the driver, killed while an LLM request is in flight, resumes: the answers it had received are replayed from the
  cache (not one of them is sent again) and the campaign finishes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from llm_loopback import IDEAS, LEAKY_RELU, Loopback, fenced, leaky_module

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]

GOOD = {1: "torch.where(x > 0, x, x * self.negative_slope)",
        3: "torch.maximum(x, x * self.negative_slope)"}
BROKEN = leaky_module("fast_leaky(x, self.negative_slope)", header="from torch import fast_leaky")
FIXED = leaky_module("torch.nn.functional.leaky_relu(x, self.negative_slope) * 1.0")


class Script:
    """The loopback's replies; it holds the third coder request (in flight when the test kills the driver)."""

    def __init__(self) -> None:
        self.hold = threading.Event()     # set: hold attempt 3
        self.held = threading.Event()     # set when attempt 3 is being held
        self.hold.set()

    def __call__(self, role: str, prompt: str, body: dict) -> str:
        if role == "ideator":
            return IDEAS
        if role == "fixer":
            return fenced(FIXED, "The import does not exist; use the functional op.")
        attempt = int(prompt.split("(attempt ")[1].split(")")[0])
        if attempt == 3 and self.hold.is_set():
            self.held.set()
            time.sleep(600)                # until the driver that asked is killed
        if attempt == 2:
            return fenced(BROKEN)
        return fenced(leaky_module(GOOD.get(attempt, f"torch.where(x > 0, x, x * self.negative_slope) + 0 * {attempt}")))


def tiny_problem(tmp: Path) -> Path:
    """The suite's leaky_relu (level 1) at a tiny size: the campaign's machinery is the point, not the kernel."""
    path = tmp / "leaky_relu.py"
    path.write_text((REPO / LEAKY_RELU).read_text().replace("batch_size = 2048", "batch_size = 16")
                    .replace("dim = 2048", "dim = 256"))
    return path


def _campaign(tmp: Path) -> Path:
    toml = tmp / "campaign.toml"
    toml.write_text(f"""
[campaign]
name = "llm-loopback"
out = "run"

[budget]
max_evaluations = 4
max_minutes = 20
max_cost_usd = 5.0

[[problems]]
path = "{tiny_problem(tmp)}"

[[targets]]
hardware = "cpu"
build_ahead = 0    # one evaluation at a time: the request counts below follow the feed one by one

[[proposers]]
kind = "llm"
model = "claude-sonnet-4-5"
concurrency = 1
ideas_per_call = 2
per_generation = 1
timeout_s = 2.0
max_retries = 6
guidance = "stay in plain torch"

[timing]
time_cap_s = 0.3
min_samples = 5
baselines = ["eager"]

[verify]
trials = 1
timeout_s = 120
""")
    return toml


def _env(url: str) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1", "ANTHROPIC_API_KEY": "sk-loopback",
           "ANTHROPIC_BASE_URL": url}
    env.pop("RAY_ADDRESS", None)
    return env


def _kill_everything(proc: subprocess.Popen, run_dir: Path) -> None:
    """SIGKILL the driver's session, then whatever of its Ray is left outside it (found by its temp dir)."""
    from search.campaign import _ray_temp_dir
    tag = Path(_ray_temp_dir(run_dir)).name
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(tag in part for part in (p.info["cmdline"] or [])):
                p.kill()
        except psutil.Error:
            pass


def test_campaign_fixes_resumes_and_replays(tmp_path: Path) -> None:
    toml = _campaign(tmp_path)
    run = tmp_path / "run"
    script = Script()
    with Loopback(script, slow_s=4.0) as lb:
        lb.faults = ["429", "slow", "529", "500"]
        proc = subprocess.Popen([sys.executable, "-m", "kswarm.cli", "run", str(toml)], env=_env(lb.url), cwd=REPO,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert script.held.wait(timeout=400), "the third coder request never came"
        finally:
            _kill_everything(proc, run)
        before = [(a["role"], a["prompt"]) for a in lb.answered]
        script.hold.clear()
        done = subprocess.run([sys.executable, "-m", "kswarm.cli", "resume", str(run)], env=_env(lb.url), cwd=REPO,
                              capture_output=True, text=True, timeout=600, start_new_session=True)
        assert done.returncode == 0, done.stderr[-3000:]
        after = [(a["role"], a["prompt"]) for a in lb.answered][len(before):]

    # the faults were served and retried by the SDK
    assert [a["fault"] for a in lb.attempts[:4]] == ["429", "slow", "529", "500"]
    # resume: nothing answered before was asked again; the third coder request (never answered) was
    assert not set(after) & set(before), [r for r, _ in after]
    assert [r for r, _ in after].count("coder") >= 1
    log = (run / "logs" / "campaign.log").read_text()
    assert "replayed" in log

    from search.population import read_population
    rows = read_population(run).to_pylist()
    llm = [r for r in rows if r["proposer"] == "llm"]
    assert len(llm) == len(rows) == 4, [(r["status"], r["reason"]) for r in rows]
    by_role = {}
    for r in llm:
        meta = json.loads(r["params"])["llm"]
        assert meta["model"] == "claude-sonnet-4-5" and len(meta["prompt_sha"]) == 64
        assert meta["input_tokens"] > 0 and meta["output_tokens"] > 0 and meta["cost_usd"] > 0
        by_role.setdefault(meta["role"], []).append(r)
    broken = [r for r in llm if r["status"] == "compile_error"]
    assert len(broken) == 1 and "fast_leaky" in broken[0]["reason"]
    [fixed] = by_role["fixer"]
    assert fixed["status"] == "accepted" and fixed["parent_ids"] == [broken[0]["candidate_id"]]
    accepted = [r for r in llm if r["status"] == "accepted"]
    assert len(accepted) == 3
    profile = json.loads(accepted[0]["profile"])
    assert profile["top_ops"] and profile["roofline"]["fraction_of_floor"] > 0

    # what the prompts held
    prompts = before + after
    fixer = [p for r, p in prompts if r == "fixer"]
    assert fixer and "cannot import name 'fast_leaky'" in fixer[0] and "from torch import fast_leaky" in fixer[0]
    statics = {"".join(b["text"] for b in a["body"]["system"]) for a in lb.answered}
    assert len(statics) == 1                       # one cached prefix for the problem and the class
    static = statics.pop()
    assert "F.leaky_relu(x, negative_slope=self.negative_slope)" in static and "Hardware class 'cpu'" in static
    with_parents = [p for r, p in prompts if r in ("coder", "ideator") and "Parents so far" in p]
    assert with_parents, "no prompt was written after a candidate was accepted"
    last = with_parents[-1]
    assert any(r["candidate_id"][:12] in last for r in accepted)
    assert "x\n" in last.split("Parents so far")[1] and "of its roofline floor" in last and "aten::" in last
    assert all("stay in plain torch" in p for r, p in prompts if r in ("coder", "ideator"))

    # the spend is in the checkpoint, and the report lists the LLM's candidates with where their ideas came from
    from search.checkpoint import load_checkpoint
    from search.report import report
    ck = load_checkpoint(run)
    spent = sum(json.loads(r["params"])["llm"]["input_tokens"] + json.loads(r["params"])["llm"]["output_tokens"]
                for r in llm)
    assert ck.tokens >= spent > 0 and ck.cost_usd > 0
    paths = report(run)
    text = paths.markdown.read_text()
    assert "## LLM ideas" in text and "4 candidates written by an LLM proposer" in text
    assert "fixer" in text.split("## LLM ideas")[1]
