"""Nothing one candidate writes into its build caches is seen by another: each candidate's child gets its own
Triton, Inductor and torch-extension caches inside its scratch folder, removed with it. Baseline children share a
build cache under the cache folder that no candidate's child may write to.

Real children throughout: candidates run by the pipeline (``evaluate``, device cpu, mode verify) plant files
through the variables their child was given and report what they saw as JSON written to a folder outside their
scratch (``extra_writable``)."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import psutil
import pytest

from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, VerifyPolicy
from evaluators.result import Status
from evaluators.child_env import BUILD_CACHES, TRUSTED_BUILDS
from evaluators.sandbox import Child, SandboxLimits

PROBLEM = """\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return x * 2.0


def get_inputs():
    return [torch.randn(8)]


def get_init_inputs():
    return []
"""
VARS = tuple(BUILD_CACHES.values())


def candidate(top: str) -> str:
    return ("import json, os\nimport torch\nimport torch.nn as nn\n\n" + textwrap.dedent(top) + "\n\n"
            "class ModelNew(nn.Module):\n    def forward(self, x):\n        return x * 2.0\n")


@pytest.fixture(scope="module")
def problem(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("caches-problem") / "double.py"
    path.write_text(PROBLEM)
    return path


def run(problem: Path, source: str, cache_dir: Path, report_dir: Path):
    verify = VerifyPolicy(static="warn", seed=1, timeout_s=120.0, extra_writable=(str(report_dir),))
    return evaluate(EvalRequest(problem_path=str(problem), candidate_source=source, device="cpu", mode="verify",
                                verify=verify, cache_dir=str(cache_dir)))


PLANT = """\
seen = {{"planted": {{}}, "shared": {{}}}}
for var in {vars!r}:
    folder = os.environ[var]
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "planted-kernel.json")      # a predictable key in a cache another child loads
    with open(path, "w") as f:
        f.write("{{}}")
    seen["planted"][var] = path
for name in ("trusted-builds/triton", "trusted-builds/inductor", "triton", "inductor", "torch_extensions"):
    path = os.path.join({cache!r}, name, "planted-by-a-candidate.json")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("{{}}")
        seen["shared"][name] = "written"
    except OSError as e:
        seen["shared"][name] = e.strerror
with open({report!r}, "w") as f:
    json.dump(seen, f)
"""
LOOK = """\
planted = json.load(open({planted!r}))["planted"]
seen = {{"exists": {{var: os.path.exists(path) for var, path in planted.items()}},
         "own": {{var: os.environ[var] for var in {vars!r}}},
         "listing": {{var: sorted(os.listdir(os.environ[var])) if os.path.isdir(os.environ[var]) else []
                     for var in {vars!r}}}}}
with open({report!r}, "w") as f:
    json.dump(seen, f)
"""


@pytest.fixture(scope="module")
def two_candidates(problem, tmp_path_factory, kswarm_cache_dir):
    """Candidate A plants a file in each of its build caches and tries the shared ones; candidate B, a later child
    with the same cache folder, looks for A's files."""
    reports = tmp_path_factory.mktemp("caches-report")
    a_report, b_report = reports / "a.json", reports / "b.json"
    a = run(problem, candidate(PLANT.format(vars=VARS, cache=str(kswarm_cache_dir), report=str(a_report))),
            kswarm_cache_dir, reports)
    assert a_report.exists(), f"candidate A never ran: {a.status.value}: {a.reason}"
    b = run(problem, candidate(LOOK.format(planted=str(a_report), vars=VARS, report=str(b_report))),
            kswarm_cache_dir, reports)
    assert b_report.exists(), f"candidate B never ran: {b.status.value}: {b.reason}"
    return (a, json.loads(a_report.read_text())), (b, json.loads(b_report.read_text()))


def test_both_candidates_are_accepted(two_candidates):
    (a, _), (b, _) = two_candidates
    assert a.status is Status.ACCEPTED, a.reason
    assert b.status is Status.ACCEPTED, b.reason


def test_a_later_candidate_does_not_see_what_an_earlier_one_planted(two_candidates):
    (_, a_seen), (_, b_seen) = two_candidates
    assert set(a_seen["planted"]) == set(VARS)
    for var in VARS:
        assert not b_seen["exists"][var], f"{var}: B sees the file A planted at {a_seen['planted'][var]}"
        assert "planted-kernel.json" not in b_seen["listing"][var]
        assert b_seen["own"][var] != os.path.dirname(a_seen["planted"][var]), f"{var}: A and B share a folder"


def test_a_candidates_build_caches_are_removed_with_it(two_candidates):
    (_, a_seen), _ = two_candidates
    for path in a_seen["planted"].values():
        assert not Path(path).exists(), f"{path} outlived candidate A"


def test_a_candidate_cannot_write_to_any_shared_build_cache(two_candidates, kswarm_cache_dir):
    (a, a_seen), _ = two_candidates
    if a.policy.get("filesystem_confined") is not True:
        pytest.skip("this host gives the child no Landlock write confinement; the result says so in policy")
    assert not [name for name, what in a_seen["shared"].items() if what == "written"], a_seen["shared"]
    assert not list(kswarm_cache_dir.rglob("planted-by-a-candidate.json"))


def child_env(child: Child) -> dict[str, str]:
    return psutil.Process(child.proc.pid).environ()


def test_baseline_children_share_the_trusted_cache_and_candidates_get_their_own(tmp_path):
    limits = SandboxLimits(timeout_s=120.0)
    with Child(limits, tmp_path, label="baseline") as b1, Child(limits, tmp_path, label="baseline") as b2, \
            Child(limits, tmp_path, label="candidate") as c:
        b1_env, b2_env, c_env = child_env(b1), child_env(b2), child_env(c)
        for name, var in BUILD_CACHES.items():
            assert b1_env[var] == b2_env[var] == str(tmp_path / TRUSTED_BUILDS / name)
            assert Path(c_env[var]).is_relative_to(c.scratch), c_env[var]
            assert Path(c_env[var]).is_dir()
        scratch = c.scratch
    assert not scratch.exists()


def test_a_candidate_starts_with_a_private_copy_of_the_trusted_caches(tmp_path):
    """What the baselines compiled is a cache hit for a candidate: its own caches start as a copy of the trusted
    ones (regular files only), and what it writes into its copy never reaches the trusted caches."""
    kernel = tmp_path / TRUSTED_BUILDS / "inductor" / "fxgraph" / "ab" / "entry"
    kernel.parent.mkdir(parents=True)
    kernel.write_bytes(b"compiled by a baseline")
    (tmp_path / TRUSTED_BUILDS / "inductor" / "link").symlink_to("/etc/passwd")
    with Child(SandboxLimits(timeout_s=120.0), tmp_path, label="candidate") as c:
        own = Path(child_env(c)[BUILD_CACHES["inductor"]])
        copy = own / "fxgraph" / "ab" / "entry"
        assert copy.read_bytes() == b"compiled by a baseline"
        assert not (own / "link").exists() and not (own / "link").is_symlink()
        copy.write_bytes(b"planted")
        assert kernel.read_bytes() == b"compiled by a baseline"
        assert os.stat(copy).st_ino != os.stat(kernel).st_ino


def test_trusted_caches_above_the_limit_are_not_copied(tmp_path, monkeypatch):
    from evaluators import child_env as given
    big = tmp_path / TRUSTED_BUILDS / "triton" / "k"
    big.parent.mkdir(parents=True)
    big.write_bytes(b"x" * 4096)
    monkeypatch.setattr(given, "SEED_MAX_BYTES", 1024)
    assert given.seed_builds(tmp_path / "own", tmp_path) == 0 and not (tmp_path / "own").exists()
    monkeypatch.setattr(given, "SEED_MAX_BYTES", 1 << 20)
    assert given.seed_builds(tmp_path / "own", tmp_path) == 4096
    assert (tmp_path / "own" / "triton" / "k").read_bytes() == big.read_bytes()
