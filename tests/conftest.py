"""Fixtures shared by every test directory. Anything a test run writes outside tmp_path goes under the ignored tmp/."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Campaigns measure their baselines into the evaluating node's cache (``[campaign] cache = "node"``): in a test
# session that is a fresh folder of the session's own, set before anything (Ray's workers, a CLI child) starts and
# inherits the environment, so that no test reads or writes the user's ~/.cache/kernelswarm.
(REPO / "tmp").mkdir(exist_ok=True)
_NODE_CACHE = None if os.environ.get("KSWARM_CACHE") else tempfile.mkdtemp(prefix="node-cache-", dir=REPO / "tmp")
if _NODE_CACHE:
    os.environ["KSWARM_CACHE"] = _NODE_CACHE


def pytest_sessionfinish(session, exitstatus):
    if _NODE_CACHE:
        shutil.rmtree(_NODE_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def kswarm_cache_dir() -> Path:
    """A build and baseline cache for one test session, fresh so that concurrent sessions never share one."""
    root = REPO / "tmp"
    root.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="eval-cache-", dir=root))
    yield path
    shutil.rmtree(path, ignore_errors=True)
