"""Fixtures shared by every test directory. Anything a test run writes outside tmp_path goes under the ignored tmp/."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kswarm_cache_dir() -> Path:
    """A build and baseline cache for one test session, fresh so that concurrent sessions never share one."""
    root = REPO / "tmp"
    root.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="eval-cache-", dir=root))
    yield path
    shutil.rmtree(path, ignore_errors=True)
