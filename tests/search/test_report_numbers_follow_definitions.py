"""Level tables, best-so-far curves and failure counts follow their stated definitions on known data."""
import math

import pytest
from popdata import row

from evaluators.result import Status
from search import report_data
from search.schema import rows_to_table


def _table():
    return rows_to_table([
        row("a1", problem="/p/level1/a.py", speedup=2.0, minutes=0),
        row("a2", problem="/p/level1/a.py", speedup=4.0, minutes=3),
        row("b1", problem="/p/level1/b.py", speedup=0.5, minutes=1),
        row("c1", problem="/p/level1/c.py", status=Status.MISMATCH, speedup=None, minutes=2),
        row("c2", problem="/p/level1/c.py", status=Status.SUSPECT_SPEEDUP, speedup=50.0, minutes=4),
        row("x1", problem="/elsewhere/x.py", speedup=1.5, minutes=5),
    ])


def test_level_summary() -> None:
    s = {r["level"]: r for r in report_data.level_summary(report_data.best_per_problem(_table())).to_pylist()}
    l1 = s["level1"]
    assert l1["problems"] == 3 and l1["correct"] == 2
    assert l1["fast_1"] == pytest.approx(1 / 3)              # only a beats 1; c's suspect 50x does not count
    assert l1["mean_speedup"] == pytest.approx((4.0 + 0.5) / 2)
    assert l1["geomean_speedup"] == pytest.approx(math.sqrt(4.0 * 0.5))
    assert l1["geomean_deployed"] == pytest.approx((4.0 * 1 * 1) ** (1 / 3))
    assert s["other"]["problems"] == 1


def test_best_so_far_rises_only_when_a_problem_improves() -> None:
    c = report_data.best_so_far(_table())
    y = c.column("geomean_best").to_pylist()
    n = 4   # problems on cpu: a, b, c, x
    assert y == pytest.approx([2 ** (1 / n), 2 ** (1 / n), 2 ** (1 / n), 4 ** (1 / n), 4 ** (1 / n),
                               (4 * 1.5) ** (1 / n)])
    assert c.column("evaluation").to_pylist() == [1, 2, 3, 4, 5, 6]


def test_failures_by_status_excludes_accepted() -> None:
    f = report_data.failures_by_status(_table()).to_pylist()
    assert f == [{"status": "mismatch", "hardware": "cpu", "count": 1},
                 {"status": "suspect_speedup", "hardware": "cpu", "count": 1}]


def test_pareto_points_mark_the_front() -> None:
    p = report_data.pareto_points(_table(), "a")
    assert p.column("on_front").to_pylist() == [True, False]   # equal errors: 4x dominates 2x
