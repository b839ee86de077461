"""Baselines are measured once per node (issue 9, item 4): two campaigns on one node with ``[campaign] cache =
"node"`` (the default) measure a problem's baselines once, into the node's cache; with ``cache = "campaign"`` each
campaign measures them afresh into its own folder. Real evaluations, without Ray; the eager baseline alone, since a
cold torch.compile in each campaign's own cache took half a minute apiece and the cache treats both alike."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.campaign import Campaign
from search.config import ConfigError, load_config
from search.population import read_population

PROBLEM = ("import torch\nclass Model(torch.nn.Module):\n    def forward(self, x):\n        return torch.tanh(x) * 2\n"
           "def get_inputs():\n    return [torch.randn(64, 64)]\ndef get_init_inputs():\n    return []\n")
CANDIDATE = PROBLEM.replace("class Model(", "class ModelNew(").replace("torch.tanh(x) * 2", "torch.tanh(x).mul_(2)")


def _toml(tmp: Path, name: str, cache: str | None) -> Path:
    (tmp / "tanh2.py").write_text(PROBLEM)
    cands = tmp / "cands"
    cands.mkdir(exist_ok=True)
    (cands / "tanh2__inplace.py").write_text(CANDIDATE)
    line = "" if cache is None else f'cache = "{cache}"\n'
    toml = tmp / f"{name}.toml"
    toml.write_text(f'[campaign]\nname = "{name}"\nout = "{name}"\n{line}[budget]\nmax_evaluations = 1\n'
                    'max_minutes = 5\n[[problems]]\npath = "tanh2.py"\n[[targets]]\nhardware = "cpu"\n'
                    '[[proposers]]\nkind = "files"\ndir = "cands"\nper_generation = 1\n'
                    '[timing]\ntime_cap_s = 0.3\nmin_samples = 5\nbaselines = ["eager"]\n')
    return toml


def _record(tmp: Path, name: str, cache: str | None) -> dict:
    cfg = load_config(_toml(tmp, name, cache))
    Campaign(cfg, tmp / name, local=True).run()
    rows = read_population(tmp / name).to_pylist()
    assert len(rows) == 1 and rows[0]["status"] == "accepted", rows
    prov = json.loads(rows[0]["provenance"]) if isinstance(rows[0]["provenance"], str) else rows[0]["provenance"]
    return prov["baseline"]


def test_a_second_campaign_on_the_node_reads_the_baselines_and_one_with_its_own_cache_measures_afresh(
        tmp_path, monkeypatch):
    node = tmp_path / "node-cache"
    monkeypatch.setenv("KSWARM_CACHE", str(node))
    first = _record(tmp_path, "first", None)          # the default: the node's cache
    assert first["cached"] is False
    assert (node / "baselines" / f"{first['key']}.json").is_file()
    assert not (tmp_path / "first" / "cache").exists()
    second = _record(tmp_path, "second", "node")
    assert second["cached"] is True and second["key"] == first["key"]
    assert second["measured_at"] == first["measured_at"]
    # the node's cache holds the record now, and a campaign with a cache of its own measures afresh all the same
    own = _record(tmp_path, "own", "campaign")
    assert own["cached"] is False and own["key"] == first["key"]
    assert (tmp_path / "own" / "cache" / "baselines" / f"{own['key']}.json").is_file()
    # and a named folder, relative to the campaign file, is one more cache of its own
    named = _record(tmp_path, "named", "shared-cache")
    assert named["cached"] is False and (tmp_path / "shared-cache" / "baselines").is_dir()


@pytest.mark.parametrize("value, says", [('""', "must not be empty"), ('"tanh2.py"', "is not a folder"),
                                          ("3", "expected")])
def test_a_bad_cache_value_names_the_key_and_what_to_write(tmp_path, value, says):
    toml = _toml(tmp_path, "bad", None)
    toml.write_text(toml.read_text().replace('out = "bad"\n', f'out = "bad"\ncache = {value}\n'))
    with pytest.raises(ConfigError, match="campaign.cache") as e:
        load_config(toml)
    assert says in str(e.value)
