"""Shared helpers for the search tests: real campaign files, problems and population rows in tmp_path."""
from __future__ import annotations

from pathlib import Path

import pytest

CAMPAIGN = """\
[campaign]
name = "t"
out = "runs/t"
seed = 1

[budget]
max_evaluations = 20
max_minutes = 5

[[problems]]
path = "problems/level1/*.py"

[[targets]]
hardware = "cpu"

[[proposers]]
kind = "rewrites"
"""


@pytest.fixture
def campaign_file(tmp_path: Path) -> Path:
    for level, name in (("level1", "1_add.py"), ("level1", "2_mul.py"), ("level2", "3_fused.py")):
        d = tmp_path / "problems" / level
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_text("import torch\n")
    path = tmp_path / "campaign.toml"
    path.write_text(CAMPAIGN)
    return path
