"""Export keeps a kernel only when its speedup's whole 95% interval lies above the threshold (1.0 unless the user
sets ``--min-speedup``): a compile variant at 1.00x [0.97, 1.05] is not a best kernel. A remeasured kernel is held
to the same rule with its fresh interval."""
import dataclasses
from pathlib import Path

from popdata import cid, result, row
from typer.testing import CliRunner

from kswarm.cli import app
from search.export import export
from search.population import Population


def _campaign(tmp_path: Path) -> Path:
    d = tmp_path / "camp"
    with Population.open(d, writer=True) as pop:
        # intervals are the point x [0.9, 1.1]: 1.05 reaches down to 0.945, 1.2 to 1.08, 1.5 to 1.35
        pop.append([row("even", speedup=1.05, err=0.0), row("some", speedup=1.2, err=1e-3),
                    row("clear", speedup=1.5, err=1e-2)])
    return d


def test_a_speedup_whose_interval_reaches_one_is_not_exported(tmp_path: Path) -> None:
    s = export(_campaign(tmp_path), tmp_path / "out")
    texts = [p.read_text() for p in s.modules]
    assert not any(cid("even") in t for t in texts)
    assert any(cid("some") in t for t in texts) and any(cid("clear") in t for t in texts)


def test_the_user_threshold_applies_to_the_interval_too(tmp_path: Path) -> None:
    s = export(_campaign(tmp_path), tmp_path / "out", min_speedup=1.1)
    assert [cid("clear") in p.read_text() for p in s.modules] == [True]


def test_a_remeasured_interval_that_reaches_the_threshold_drops_the_kernel(tmp_path: Path) -> None:
    def remeasure(problem_path, source, hardware):
        fresh = result(speedup=1.5)
        return dataclasses.replace(fresh, speedup_ci=(0.98, 2.0))   # the point holds, the interval does not
    s = export(_campaign(tmp_path), tmp_path / "out", remeasure=remeasure)
    assert s.modules == () and s.dropped == 2


def test_the_cli_takes_min_speedup(tmp_path: Path) -> None:
    d = _campaign(tmp_path)
    out = CliRunner().invoke(app, ["export", str(d), "--out", str(tmp_path / "out"), "--min-speedup", "1.1"])
    assert out.exit_code == 0, out.output
    assert "1 modules written" in out.output
    bad = CliRunner().invoke(app, ["export", str(d), "--out", str(tmp_path / "out"), "--min-speedup", "0"])
    assert bad.exit_code == 2 and "--min-speedup must be above 0" in bad.output
