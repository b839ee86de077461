import json
from pathlib import Path

import pytest

from search.config import ConfigError, load_config
from search.snapshot import config_from_dict, config_to_dict, load_snapshot, write_snapshot


def test_config_round_trips_through_json(campaign_file: Path) -> None:
    c = load_config(campaign_file)
    assert config_from_dict(json.loads(json.dumps(config_to_dict(c)))) == c


def test_snapshot_survives_edits_to_the_campaign_file(campaign_file: Path) -> None:
    c = load_config(campaign_file)
    write_snapshot(c)
    original = campaign_file.read_text()
    campaign_file.write_text(original.replace("max_evaluations = 20", "max_evaluations = 99"))
    d = c.campaign.out
    assert (d / "campaign.toml").read_text() == original
    assert load_snapshot(d) == c


def test_snapshot_refuses_a_different_campaign_in_the_same_dir(campaign_file: Path) -> None:
    c = load_config(campaign_file)
    write_snapshot(c)
    write_snapshot(c)  # the same campaign again: a resume
    campaign_file.write_text(campaign_file.read_text().replace("max_evaluations = 20", "max_evaluations = 99"))
    with pytest.raises(ConfigError, match="different campaign"):
        write_snapshot(load_config(campaign_file))
    write_snapshot(load_config(campaign_file), overwrite=True)
    assert load_snapshot(c.campaign.out).budget.max_evaluations == 99


def test_missing_snapshot_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_snapshot(tmp_path)
