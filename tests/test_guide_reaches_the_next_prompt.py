"""``kswarm guide DIR "TEXT"`` appends guidance that the LLM proposer of that campaign reads before its next
prompt, with no restart; a directory that is no campaign, an empty text and an unknown problem are refused."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from search.config import load_config
from search.snapshot import write_snapshot

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "proposers"))

from llm_loopback import IDEAS, LEAKY_RELU, Loopback, fenced, leaky_module, proposer  # noqa: E402
from proposers.base import StaticView  # noqa: E402


def _kswarm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kswarm.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def _campaign(tmp_path: Path) -> Path:
    toml = tmp_path / "c.toml"
    toml.write_text(f"""
[campaign]
name = "g"
out = "run"
[budget]
max_evaluations = 4
max_minutes = 1
[[problems]]
path = "{REPO / LEAKY_RELU}"
[[targets]]
hardware = "cpu"
[[proposers]]
kind = "llm"
model = "claude-haiku-4-5"
""")
    cfg = load_config(toml)
    write_snapshot(cfg)
    return cfg.campaign.out


def test_guidance_reaches_the_next_prompt_of_a_running_proposer(tmp_path: Path) -> None:
    run = _campaign(tmp_path)
    reply = lambda role, prompt, body: IDEAS if role == "ideator" else fenced(leaky_module(  # noqa: E731
        f"torch.where(x > 0, x, x * self.negative_slope) + 0 * {len(body['messages'][-1]['content'])}"))
    with Loopback(reply) as lb:
        p = proposer(lb, run, concurrency=1, roles=("coder",))
        p.propose(StaticView(LEAKY_RELU), 1)
        done = _kswarm("guide", str(run), "avoid   C++ extensions;\nstay in torch")
        assert done.returncode == 0, done.stderr
        p.propose(StaticView(LEAKY_RELU), 1)
        only_other = _kswarm("guide", str(run), "--problem", "leaky_relu", "use torch.where")
        assert only_other.returncode == 0, only_other.stderr
        p.propose(StaticView(LEAKY_RELU), 1)
    first, second, third = (a["prompt"] for a in lb.answered)
    assert "Guidance" not in first
    assert "avoid C++ extensions; stay in torch" in second and "use torch.where" not in second
    assert "use torch.where" in third
    assert (run / "guidance.jsonl").read_text().count("\n") == 2


def test_guide_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    run = _campaign(tmp_path)
    nodir = _kswarm("guide", str(tmp_path / "nowhere"), "text")
    assert nodir.returncode == 2 and "not a campaign directory" in nodir.stderr
    empty = _kswarm("guide", str(run), "   ")
    assert empty.returncode == 2 and "empty" in empty.stderr
    wrong = _kswarm("guide", str(run), "--problem", "softmax", "x")
    assert wrong.returncode == 2 and "not in this campaign" in wrong.stderr and "leaky_relu" in wrong.stderr
    assert not (run / "guidance.jsonl").exists()
