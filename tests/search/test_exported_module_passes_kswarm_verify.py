"""An exported module, on its own, passes ``kswarm verify`` against its problem (the real evaluator, on CPU)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from popdata import Cand, result

from search.export import export
from search.population import Population
from search.schema import Placement, row_from_result

REPO = Path(__file__).resolve().parents[2]
PROBLEM = REPO / "experiments/problems/level1/leaky_relu.py"
CANDIDATE = """\
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, negative_slope):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return torch.where(x > 0, x, x * self.negative_slope)
"""


@pytest.mark.slow
@pytest.mark.skipif(not PROBLEM.exists(), reason="needs the bundled problem suite")
def test_exported_module_verifies_against_its_problem(tmp_path: Path) -> None:
    kswarm = shutil.which("kswarm", path=str(Path(sys.executable).parent))
    if kswarm is None:
        pytest.skip("kswarm is not installed in this environment")
    r = row_from_result(result(speedup=1.3, err=0.0), Cand(source=CANDIDATE),
                        Placement(campaign="t", problem_path=str(PROBLEM)))
    with Population.open(tmp_path / "camp", writer=True) as pop:
        pop.append([r])
    summary = export(tmp_path / "camp", tmp_path / "out")
    assert [p.name for p in summary.modules] == ["leaky_relu__cpu.py"]
    proc = subprocess.run([kswarm, "verify", str(PROBLEM), str(summary.modules[0]), "--json"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "accepted"
