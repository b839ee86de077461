"""Fuzzed campaign files: whatever the bytes, ``load_config`` returns a config or raises ``ConfigError`` with one
line that starts with the file's path; never another exception."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.config import CampaignConfig, ConfigError, load_config
from tomlgen import SECTIONS, keys, toml_document, values

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PROBLEM = """import torch
import torch.nn as nn
class Model(nn.Module):
    def forward(self, x):
        return x + 1
def get_inputs():
    return [torch.randn(4)]
def get_init_inputs():
    return []
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("campaign")
    (d / "problems" / "level1").mkdir(parents=True)
    (d / "problems" / "level1" / "add_one.py").write_text(PROBLEM)
    (d / "hand").mkdir()
    return d


def base_campaign() -> dict[str, Any]:
    return {
        "campaign": {"name": "fuzz", "out": "runs/fuzz", "seed": 1},
        "budget": {"max_evaluations": 4, "max_minutes": 1},
        "problems": [{"path": "problems/level1/*.py", "levels": [1]}],
        "targets": [{"hardware": "cpu"}],
        "proposers": [{"kind": "rewrites"}, {"kind": "files", "dir": "hand", "name": "hand"}],
        "verify": {"trials": 5, "memory_mb": 4096},
        "timing": {"time_cap_s": 1.0},
        "evolution": {"parents": 2},
    }


def check_load(file: Path) -> CampaignConfig | None:
    try:
        return load_config(file)
    except ConfigError as e:
        message = str(e)
        assert message.startswith(f"{file}: "), message
        assert "\n" not in message and "\r" not in message, message
        assert len(message) < 2000, message
        return None


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_load_or_raise_config_error(folder: Path, data: bytes) -> None:
    file = folder / "bytes.toml"
    file.write_bytes(data)
    check_load(file)


@FUZZ
@given(data=st.binary(max_size=200), at=st.integers(min_value=0))
def test_a_valid_file_with_bytes_spliced_in_loads_or_raises_config_error(folder: Path, data: bytes, at: int) -> None:
    text = toml_document(base_campaign()).encode()
    at %= len(text)
    file = folder / "spliced.toml"
    file.write_bytes(text[:at] + data + text[at:])
    check_load(file)


# A mutation: (section, action, key, value). Arrays of tables are mutated in their first entry.
mutations = st.tuples(st.one_of(st.sampled_from(SECTIONS), keys),
                      st.sampled_from(["set", "delete", "replace", "append"]), keys, values)


def mutate(doc: dict[str, Any], section: str, action: str, key: str, value: Any) -> None:
    if action == "replace" or section not in doc:
        doc[section] = value
        return
    target = doc[section]
    if isinstance(target, list):
        if action == "append":
            target.append(value if isinstance(value, dict) else {key: value})
            return
        target = target[0] if target and isinstance(target[0], dict) else None
    if not isinstance(target, dict):
        doc[section] = value
    elif action == "delete":
        target.pop(key, None)
    else:
        target[key] = value


@FUZZ
@given(ops=st.lists(mutations, min_size=1, max_size=4))
def test_mutated_campaigns_load_or_raise_config_error(folder: Path, ops) -> None:
    doc = copy.deepcopy(base_campaign())
    for op in ops:
        mutate(doc, *op)
    file = folder / "mutated.toml"
    file.write_text(toml_document(doc), encoding="utf-8")
    cfg = check_load(file)
    if cfg is not None:
        assert cfg.budget.max_evaluations >= 1 and cfg.problem_files


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.sampled_from(SECTIONS), value=values)
def test_any_section_of_any_type_loads_or_raises_config_error(folder: Path, section: str, value: Any) -> None:
    doc = base_campaign()
    doc[section] = value
    file = folder / "section.toml"
    file.write_text(toml_document(doc), encoding="utf-8")
    check_load(file)


def test_the_base_campaign_loads(folder: Path) -> None:
    file = folder / "base.toml"
    file.write_text(toml_document(base_campaign()))
    cfg = load_config(file)
    assert [f.name for f in cfg.problem_files] == ["add_one.py"]
