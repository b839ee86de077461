"""Export names modules after the problem, keeps only faster Pareto members, and records the evidence."""
import json
from pathlib import Path

from popdata import cid, row

from evaluators.result import Status
from search.config import load_config
from search.snapshot import write_snapshot
from search.export import export
from search.population import Population


def _campaign(tmp_path: Path) -> Path:
    d = tmp_path / "camp"
    with Population.open(d, writer=True) as pop:
        pop.append([
            row("fast", speedup=3.0, err=1e-3), row("exact", speedup=1.5, err=0.0),
            row("dominated", speedup=1.2, err=1e-2), row("slower", speedup=0.8, err=0.0, compile_seconds=0.1),
            row("suspect", speedup=80.0, err=0.0, status=Status.SUSPECT_SPEEDUP),
            row("gpu", speedup=5.0, hardware="rtx6000-blackwell", problem="/p/level2/fused.py"),
            row("broken", speedup=None, status=Status.MISMATCH, problem="/p/level2/other.py"),
        ])
    return d


def test_modules_are_named_after_problem_and_hardware(tmp_path: Path) -> None:
    s = export(_campaign(tmp_path), tmp_path / "out")
    assert sorted(p.name for p in s.modules) == ["add__cpu.py", "add__cpu__1.py", "fused__rtx6000_blackwell.py"]
    assert cid("fast") in (tmp_path / "out/add__cpu.py").read_text()
    assert cid("exact") in (tmp_path / "out/add__cpu__1.py").read_text()


def test_manifest_holds_the_evidence(tmp_path: Path, campaign_file: Path) -> None:
    d = _campaign(tmp_path)
    write_snapshot(load_config(campaign_file), d)
    s = export(d, tmp_path / "out")
    m = json.loads(s.manifest_json.read_text())
    assert m["remeasured"] is False and m["evaluations"] == 7
    assert m["verify_policy"]["trials"] == 5
    first = next(e for e in m["modules"] if e["module"] == "add__cpu.py")
    f = first["measured"]
    assert f["speedup"] == 3.0 and f["speedup_ci"] == [2.7, 3.3000000000000003]
    assert f["eager_ms"] == 2.0 and f["compile_ms"] == 2.2 and f["baseline"] == "eager"
    assert f["max_abs_err"] == 1e-3 and f["device"] == "Test CPU"
    assert first["provenance"]["torch"] == "2.13.0" and "verify" in first["policy"]
    assert first["remeasured"] is None and first["problem_path"] == "/p/level1/add.py"
    md = s.manifest_md.read_text()
    assert "`add__cpu.py`" in md and "3x [2.7, 3.3]" in md and "Verification policy" in md


def test_suspect_slower_and_dominated_are_never_exported(tmp_path: Path) -> None:
    s = export(_campaign(tmp_path), tmp_path / "out")
    text = "".join(p.read_text() for p in s.modules)
    for tag in ("suspect", "slower", "dominated", "broken"):
        assert cid(tag) not in text


def test_a_new_export_removes_the_old_modules(tmp_path: Path) -> None:
    d = _campaign(tmp_path)
    export(d, tmp_path / "out")
    (tmp_path / "out" / "notes.txt").write_text("mine")
    export(d, tmp_path / "out", min_speedup=2.0)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["add__cpu.py", "fused__rtx6000_blackwell.py", "manifest.json", "manifest.md", "notes.txt"]


def test_empty_campaign_exports_an_empty_manifest(tmp_path: Path) -> None:
    s = export(tmp_path / "empty", tmp_path / "out")
    assert s.modules == () and json.loads(s.manifest_json.read_text())["modules"] == []
    assert "No candidate" in s.manifest_md.read_text()
