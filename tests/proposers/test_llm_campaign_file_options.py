"""``[[proposers]] kind = "llm"`` loads with its options; the campaign directory and the budget's max_tokens and
max_cost_usd reach the proposer; a wrong provider, role or value is refused naming the key; a resumed directory
that was moved is where the proposer keeps its cache."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from proposers import get_proposer
from search.config import ConfigError, load_config
from search.snapshot import load_snapshot, write_snapshot

REPO = Path(__file__).resolve().parents[2]
BASE = f"""
[campaign]
name = "c"
out = "run"
[budget]
max_evaluations = 3
max_minutes = 1
max_tokens = 50000
max_cost_usd = 2.5
[[problems]]
path = "{REPO / 'experiments/problems/level1/leaky_relu.py'}"
[[targets]]
hardware = "cpu"
[[proposers]]
kind = "llm"
"""


def _load(tmp_path: Path, extra: str):
    f = tmp_path / "c.toml"
    f.write_text(BASE + extra)
    return load_config(f)


def test_options_and_campaign_context_reach_the_proposer(tmp_path: Path) -> None:
    cfg = _load(tmp_path, 'model = "claude-haiku-4-5"\nconcurrency = 2\nroles = ["coder", "fixer"]\n'
                          'guidance = "stay in torch"\ntune_trials = 0\n')
    [spec] = cfg.proposers
    assert spec.options["model"] == "claude-haiku-4-5" and spec.options["roles"] == ("coder", "fixer")
    assert spec.options["campaign_dir"] == str(tmp_path / "run")
    assert spec.options["budget_tokens"] == 50000 and spec.options["budget_cost_usd"] == 2.5
    p = get_proposer("llm", **spec.options, env={})
    assert p.budget_tokens == 50000 and p.guidance == "stay in torch" and p.campaign_dir == tmp_path / "run"
    write_snapshot(cfg)
    moved = tmp_path / "moved"
    shutil.move(str(tmp_path / "run"), moved)
    assert load_snapshot(moved).proposers[0].options["campaign_dir"] == str(moved)


@pytest.mark.parametrize("extra, key, says", [
    ('provider = "gemini"', "proposers[0].provider", "'anthropic', 'openai'"),
    ('roles = ["ideator"]', "proposers[0].roles", "must include \"coder\""),
    ('roles = ["coder", "critic"]', "proposers[0].roles[1]", "'critic' is not one of"),
    ("concurrency = 0", "proposers[0].concurrency", ">= 1"),
    ('provider = "openai"', "proposers[0].base_url", "missing"),
    ('modle = "x"', "proposers[0].modle", "did you mean 'model'"),
    ('campaign_dir = "elsewhere"', "proposers[0].campaign_dir", "unknown key"),
])
def test_bad_llm_options_are_refused_naming_the_key(tmp_path: Path, extra: str, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, extra + "\n")
    assert key in str(e.value) and says in str(e.value)
