"""Every bad campaign file gets a ConfigError naming the file and the dotted key."""
from pathlib import Path

import pytest

from search.config import ConfigError, load_config


def _error(campaign_file: Path, old: str, new: str) -> str:
    text = campaign_file.read_text()
    assert old in text
    campaign_file.write_text(text.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_config(campaign_file)
    message = str(info.value)
    assert str(campaign_file) in message
    return message


def test_unknown_key_is_an_error_with_a_suggestion(campaign_file: Path) -> None:
    m = _error(campaign_file, "max_minutes = 5", "max_minutes = 5\nmax_evalutions = 3")
    assert "budget.max_evalutions" in m and "max_evaluations" in m


def test_unknown_section_is_an_error(campaign_file: Path) -> None:
    m = _error(campaign_file, "[budget]", "[bugdet]\nx = 1\n[budget]")
    assert "bugdet" in m and "budget" in m


def test_unknown_key_in_an_array_table_names_its_index(campaign_file: Path) -> None:
    assert "targets[0].wait" in _error(campaign_file, 'hardware = "cpu"', 'hardware = "cpu"\nwait = 3')


def test_unknown_proposer_option_is_an_error(campaign_file: Path) -> None:
    m = _error(campaign_file, 'kind = "rewrites"', 'kind = "rewrites"\nmodel = "x"')
    assert "proposers[0].model" in m


def test_wrong_type_names_the_key(campaign_file: Path) -> None:
    m = _error(campaign_file, "max_evaluations = 20", 'max_evaluations = "20"')
    assert "budget.max_evaluations" in m and "without quotes" in m


def test_boolean_is_not_an_integer(campaign_file: Path) -> None:
    assert "campaign.seed" in _error(campaign_file, "seed = 1", "seed = true")


def test_missing_required_key(campaign_file: Path) -> None:
    assert "budget.max_minutes" in _error(campaign_file, "max_minutes = 5", "")


def test_missing_section(campaign_file: Path) -> None:
    assert "targets" in _error(campaign_file, '[[targets]]\nhardware = "cpu"', "")


def test_glob_with_no_match(campaign_file: Path) -> None:
    m = _error(campaign_file, "problems/level1/*.py", "problems/level9/*.py")
    assert "problems[0].path" in m and "matches no file" in m


def test_missing_files_dir(campaign_file: Path) -> None:
    m = _error(campaign_file, 'kind = "rewrites"', 'kind = "files"\ndir = "nowhere"')
    assert "proposers[0].dir" in m


def test_unknown_proposer_kind_lists_the_valid_ones(campaign_file: Path) -> None:
    m = _error(campaign_file, 'kind = "rewrites"', 'kind = "genetic"')
    assert "proposers[0].kind" in m and "'optuna'" in m
    # a kind this version cannot build is refused when the file loads, not when the campaign starts
    m = _error(campaign_file, 'kind = "genetic"', 'kind = "supervisor"')
    assert "proposers[0].kind" in m and "'rewrites'" in m


def test_single_bracket_array_table(campaign_file: Path) -> None:
    assert "[[targets]]" in _error(campaign_file, "[[targets]]", "[targets]")


def test_policy_literal_is_checked(campaign_file: Path) -> None:
    m = _error(campaign_file, "[[targets]]", '[verify]\nstatic = "sometimes"\n[[targets]]')
    assert "verify.static" in m


def test_non_positive_budget(campaign_file: Path) -> None:
    assert "budget.max_evaluations" in _error(campaign_file, "max_evaluations = 20", "max_evaluations = 0")


def test_duplicate_target(campaign_file: Path) -> None:
    m = _error(campaign_file, '[[targets]]\nhardware = "cpu"',
               '[[targets]]\nhardware = "cpu"\n[[targets]]\nhardware = "cpu"')
    assert "targets[1].hardware" in m


def test_invalid_toml_names_the_file(campaign_file: Path) -> None:
    assert "not valid TOML" in _error(campaign_file, "seed = 1", "seed = = 1")


def test_missing_campaign_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
