"""Triton row templates give the reference's values on a CUDA device, for several points of their space."""
from __future__ import annotations

import pathlib

import pytest
import torch

from harness import build_pair, max_violation
from proposers.rewrites.problem import Problem
from proposers.templates import bindings, template_module

SUITE = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "problems" / "level1"
POINTS = [{"BLOCK": 1024, "num_warps": 4, "num_stages": 2}, {"BLOCK": 256, "num_warps": 2, "num_stages": 1},
          {"BLOCK": 8192, "num_warps": 16, "num_stages": 3}]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("problem_id", ["softmax", "log_softmax", "layer_norm", "rms_norm"])
@pytest.mark.parametrize("point", POINTS, ids=lambda p: f"B{p['BLOCK']}w{p['num_warps']}s{p['num_stages']}")
def test_triton_row_template_is_exact(problem_id, point):
    problem = Problem.from_path(SUITE / f"{problem_id}.py")
    bound = dict(bindings(problem, "cuda"))
    assert "triton_rows" in bound
    src = template_module("triton_rows").render(problem, bound["triton_rows"], point, None)
    ref, new, prob = build_pair(problem.source, src)
    ref, new = ref.cuda(), new.cuda()
    for seed in (0, 1):
        torch.manual_seed(seed)
        x = [t.cuda() for t in prob.get_inputs()]
        for scale in (1.0, 10.0, 1000.0):
            with torch.no_grad():
                assert max_violation(ref(*[t * scale for t in x]), new(*[t * scale for t in x])) <= 0
