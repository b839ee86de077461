"""Every adversarial fixture gets the verdict its docstring names, and every honest fixture is accepted.

Adversarial fixtures are judged twice: with static flags only recorded (the dynamic checks must catch the cheat on
their own) and with static flags rejecting. Honest fixtures are judged with static="reject" only: honest work must
pass the static checks too. The contract of each fixture lives in its docstring; see tests/fixtures/catalog.py.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

_CATALOG_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "catalog.py"
_spec = importlib.util.spec_from_file_location("kswarm_fixture_catalog", _CATALOG_PATH)
catalog = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = catalog      # dataclasses resolves annotations through sys.modules
_spec.loader.exec_module(catalog)

from evaluators.result import Status  # noqa: E402

FIXTURES = catalog.load_fixtures()
STATUS_VALUES = {s.value for s in Status}
CPU_THREAT_CATEGORIES = range(1, 16)   # every category in VERIFICATION.md has a form that occurs on a CPU


def _cases():
    for fx in FIXTURES:
        marks = [getattr(pytest.mark, m) for m in fx.marks]
        for static in ("warn", "reject"):
            if static in fx.expected:
                yield pytest.param(fx, static, id=f"{fx.id}[static={static}]", marks=marks)


@pytest.fixture(scope="session")
def eval_cache_dir(tmp_path_factory) -> str:
    """One build and baseline cache for the session, so the C++ fixture compiles once."""
    return str(tmp_path_factory.mktemp("kswarm-eval-cache"))


# --- the catalogue itself: runs without the evaluator -------------------------------------------------------------

def test_every_cpu_threat_category_has_an_adversarial_fixture():
    covered = {fx.category for fx in FIXTURES if fx.kind == "adversarial"}
    assert not set(CPU_THREAT_CATEGORIES) - covered, f"no fixture for categories {set(CPU_THREAT_CATEGORIES) - covered}"


def test_every_honest_technique_has_a_fixture():
    techniques = {fx.technique for fx in FIXTURES if fx.kind == "honest"}
    assert {"op substitution", "algebraic rewrite", "fused C++ kernel", "torch.compile"} <= techniques


@pytest.mark.parametrize("fx", FIXTURES, ids=[fx.id for fx in FIXTURES])
def test_fixture_docstring_names_a_problem_and_real_statuses(fx):
    assert fx.problem_path.is_file(), f"{fx.id}: no problem {fx.problem!r}"
    for static, alternatives in fx.expected.items():
        assert set(alternatives) <= STATUS_VALUES, f"{fx.id}: unknown status in {alternatives}"
        # an escape probe whose only trace in the source is a plain file read may be flagged or not
        verdicts = {a == Status.ACCEPTED.value for a in alternatives if a != Status.STATIC_VIOLATION.value}
        assert len(verdicts) <= 1, f"{fx.id}: alternatives {alternatives} mix acceptance and rejection"
    if fx.kind == "honest":
        assert fx.expected == {"reject": ("accepted",)}


@pytest.mark.parametrize("path", catalog.problem_paths(), ids=lambda p: p.stem)
def test_problem_is_in_kernelbench_form(path):
    ns: dict = {"__name__": f"fixture_problem_{path.stem}"}
    exec(compile(path.read_text(), str(path), "exec"), ns)   # trusted: problems are ours
    assert {"Model", "get_inputs", "get_init_inputs", "SCALES"} <= ns.keys()
    for scale, sizes in ns["SCALES"].items():
        unknown = set(sizes) - ns.keys()
        assert not unknown, f"{path.stem}: SCALES[{scale!r}] names {unknown}, which are not module-level sizes"
    inputs = ns["get_inputs"]()
    assert sum(t.numel() for t in inputs) <= 16384, "fixture problems stay tiny"
    out = ns["Model"](*ns["get_init_inputs"]())(*inputs)
    assert out.dtype == inputs[0].dtype


# --- the verdicts -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fx", "static"), list(_cases()))
def test_fixture_gets_its_expected_verdict(fx, static, eval_cache_dir):
    outcome = catalog.evaluate_fixture(fx, static, eval_cache_dir)
    result = outcome.result
    detail = (f"{fx.id} static={static}: got {result.status.value} ({result.reason!r}); "
              f"static_flags={list(result.static_flags)} probes={list(result.probe_verdicts)}")
    assert result.status.value in fx.expected[static], f"expected {'|'.join(fx.expected[static])}; {detail}"
    assert result.reason.strip(), f"empty reason; {detail}"
    assert not re.search(r"[\r\n]", result.reason), f"reason is not a single line; {detail}"
    assert not outcome.escapes, f"the candidate escaped: {'; '.join(outcome.escapes)}; {detail}"
