"""Every KernelBench problem (../shared/kernelbench, v0 and head, levels 1-3) is traced or gets a one-line reason,
and every candidate the rewrites propose for it builds and runs on the meta device with the reference's output
shapes. Nothing is evaluated here (experiments/rewrite_coverage.py does that); the file is skipped where the
problems are not present."""
from __future__ import annotations

import pathlib
import warnings

import pytest
import torch

from harness import load_module
from proposers.rewrites.core import generate_applied
from proposers.rewrites.problem import Problem, build_meta_model, trace_problem_reason
from proposers.rewrites.proposer import COMBINED

KERNELBENCH = pathlib.Path(__file__).resolve().parents[3] / "shared" / "kernelbench"
PROBLEMS = sorted(KERNELBENCH.glob("*/level[123]/*.py"))
RECIPES = (COMBINED, ("channels_last",), ("avgpool_conv",))

pytestmark = pytest.mark.skipif(not PROBLEMS, reason=f"no KernelBench problems under {KERNELBENCH}")


def _shapes(out):
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)):
        return tuple(_shapes(o) for o in out)
    return out


def _traced_shapes(traced):
    out = next(n for n in traced.gm.graph.nodes if n.op == "output").args[0]
    return _shapes(torch.fx.node.map_aggregate(
        out, lambda n: torch.empty(n.meta["tensor_meta"].shape, device="meta") if isinstance(n, torch.fx.Node) else n))


@pytest.mark.parametrize("path", PROBLEMS, ids=[str(p.relative_to(KERNELBENCH)) for p in PROBLEMS])
def test_problem_is_traced_or_says_why_and_its_candidates_build(path):
    problem = Problem.from_path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced, reason = trace_problem_reason(problem)
    if traced is None:
        assert reason and "\n" not in reason
        return
    with torch.device("meta"):
        inputs = traced.module.get_inputs()
    # a recurrent layer on meta tensors steps through every time step (slow): such candidates are only built
    run = traced.shapes_known and not any(isinstance(m, torch.nn.RNNBase) for m in traced.model.modules())
    for names in RECIPES:
        out = generate_applied(problem, list(names), {}, traces=[traced])
        if out is None:
            continue
        source, applied = out
        cand = load_module(source, "_ks_kb_candidate")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            new = build_meta_model(traced.module, cand.ModelNew)
            if run:
                assert _shapes(new(*inputs)) == _traced_shapes(traced), applied
