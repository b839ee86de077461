"""With a remeasure callable, export re-verifies and re-times each member and keeps only what still holds."""
import json
from pathlib import Path

from popdata import cid, result, row

from evaluators.result import EvalResult, Status
from search.export import export
from search.population import Population


def test_remeasure_drops_failures_and_records_old_and_new(tmp_path: Path) -> None:
    d = tmp_path / "camp"
    with Population.open(d, writer=True) as pop:
        pop.append([row("holds", speedup=3.0, err=1e-3), row("wrong", speedup=2.5, err=1e-4),
                    row("noise", speedup=2.0, err=1e-5), row("crash", speedup=1.5, err=0.0)])
    calls = []

    def remeasure(problem_path: str, src: str, hardware: str) -> EvalResult:
        calls.append((problem_path, hardware))
        if cid("crash") in src or "# crash" in src:
            raise RuntimeError("child died")
        if "# wrong" in src:
            return result(Status.MISMATCH, speedup=None, reason="max_abs_err 0.3 > 1e-4")
        if "# noise" in src:
            return result(speedup=0.97)
        return result(speedup=2.8, err=2e-3)

    s = export(d, tmp_path / "out", remeasure=remeasure)
    assert calls and all(c == ("/p/level1/add.py", "cpu") for c in calls)
    assert [p.name for p in s.modules] == ["add__cpu.py"] and s.dropped == 3
    m = json.loads(s.manifest_json.read_text())
    e = m["modules"][0]
    assert e["candidate_id"] == cid("holds")
    assert e["measured"]["speedup"] == 3.0 and e["remeasured"]["speedup"] == 2.8
    assert e["remeasured"]["max_abs_err"] == 2e-3
    reasons = {x["candidate_id"]: x["reason"] for x in m["dropped"]}
    assert "mismatch" in reasons[cid("wrong")] and "0.97" in reasons[cid("noise")]
    assert "RuntimeError" in reasons[cid("crash")]
    assert "Dropped on remeasurement" in s.manifest_md.read_text()
