"""Exported modules stand alone: anything importing kernelswarm's packages is refused, the rest imports cleanly."""
import os
import subprocess
import sys
from pathlib import Path

from popdata import cid, row, source

from search.export import export, forbidden_imports
from search.population import Population

CHEAT = source("cheat").replace("import torch\n", "import torch\nfrom evaluators.result import Status\n")


def test_forbidden_imports_are_found() -> None:
    assert forbidden_imports("import torch\nimport numpy as np\n") == []
    assert forbidden_imports("import search.population") == ["line 1: imports 'search.population'"]
    assert forbidden_imports("from evaluators import result")[0].startswith("line 1")
    assert "relative import" in forbidden_imports("from . import x")[0]
    assert forbidden_imports("import importlib\nimportlib.import_module('cluster.x')")
    assert forbidden_imports("__import__('proposers')")
    assert forbidden_imports("def f(:\n")[0].startswith("line 1: syntax error")
    assert forbidden_imports("import searchlight\nfrom kernels import x") == []


def test_export_refuses_a_module_that_imports_kernelswarm(tmp_path: Path) -> None:
    with Population.open(tmp_path / "camp", writer=True) as pop:
        r = row("cheat", speedup=4.0, err=0.0)
        r["source"] = CHEAT
        pop.append([r, row("honest", speedup=2.0, err=1e-3)])
    summary = export(tmp_path / "camp", tmp_path / "out")
    assert summary.refused == 1
    assert [p.name for p in summary.modules] == ["add__cpu.py"]
    assert f"# {'honest'}" in (tmp_path / "out" / "add__cpu.py").read_text()


def test_exported_modules_import_in_a_clean_interpreter(tmp_path: Path) -> None:
    with Population.open(tmp_path / "camp", writer=True) as pop:
        pop.append([row("one", speedup=2.0, err=1e-3), row("two", speedup=1.5, err=0.0)])
    summary = export(tmp_path / "camp", tmp_path / "out")
    assert len(summary.modules) == 2
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for module in summary.modules:
        assert forbidden_imports(module.read_text()) == []
        code = (f"import importlib.util, sys\n"
                f"spec = importlib.util.spec_from_file_location('m', {str(module)!r})\n"
                "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
                "import torch\nprint(m.ModelNew()(torch.zeros(2)).tolist())\n"
                "assert not any(n.split('.')[0] in {'search', 'evaluators', 'proposers', 'cluster'} "
                "for n in sys.modules)\n")
        out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "[1.0, 1.0]"
    assert cid("one") in (tmp_path / "out" / "add__cpu.py").read_text()
