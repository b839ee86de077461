"""The fusion generator finds its segments in KernelBench's level 2 problems (matmul epilogues, row reductions and
norms, chains after convolutions), writes candidates that import as Python with the reference's state dict, and
proposes only for hardware classes whose devices run Triton."""
from __future__ import annotations

import pathlib

import pytest

from proposers import StaticView, get_proposer
from proposers.backends import BACKEND_NEEDS, backend_runs
from proposers.fusion.plan import plan
from proposers.rewrites.problem import Problem, trace_problem

KB = pathlib.Path(__file__).resolve().parents[3] / "shared" / "kernelbench" / "head" / "level2"
needs_kb = pytest.mark.skipif(not KB.is_dir(), reason=f"KernelBench not found at {KB}")

# problem -> (segment kinds, pivot of the first segment, its elementwise step count before the pivot)
EXPECTED = {
    "76_Gemm_Add_ReLU": (["gemm"], None, 2),                       # bias add, relu (the linear has no bias)
    "86_Matmul_Divide_GELU": (["gemm"], None, 3),                  # linear bias, divide, gelu
    "45_Gemm_Sigmoid_LogSumExp": (["gemm", "gemm"], None, 2),      # bias, sigmoid; then bias, logsumexp
    "14_Gemm_Divide_Sum_Scaling": (["gemm"], "sum", 1),
    "99_Matmul_GELU_Softmax": (["gemm"], "softmax", 2),
    "30_Gemm_GroupNorm_Hardtanh": (["gemm"], "group_norm", 1),
    "49_ConvTranspose3d_Softmax_Sigmoid": (["chain"], "softmax", 0),
    # mean over H, W then the bias; logsumexp over channels, then sum and multiply
    "42_ConvTranspose2d_GlobalAvgPool_BiasAdd_LogSumExp_Sum_Multiply": (["chain", "chain"], "mean", 0),
}


@needs_kb
@pytest.mark.parametrize("pid", sorted(EXPECTED))
def test_segments_of_kernelbench_problems(pid):
    traced = trace_problem(Problem.from_path(KB / f"{pid}.py"))
    segs = plan(traced)
    kinds, pivot, pre = EXPECTED[pid]
    assert [s.kind for s in segs] == kinds
    first = segs[0].chain
    assert (first.pivot.op if first.pivot else None) == pivot
    assert len(first.pre) == pre


@needs_kb
def test_most_level2_problems_bind():
    bound = sum(1 for f in sorted(KB.glob("*.py")) if (t := trace_problem(Problem.from_path(f))) and plan(t))
    assert bound >= 60, bound


@needs_kb
def test_proposes_only_where_triton_runs(tmp_path):
    path = str(KB / "76_Gemm_Add_ReLU.py")
    p = get_proposer("fusion")
    for hw in ("cpu", "m4"):
        assert p.propose(StaticView(path, hw), 4) == []
    cands = p.propose(StaticView(path, "h200"), 4)
    assert len(cands) == 4 and all(c.backend == "triton" and c.hardware == "h200" for c in cands)
    assert len({c.id for c in cands}) == 4
    assert p.propose(StaticView(path, "h200"), 4)[0].id not in {c.id for c in cands}   # never the same twice
    for c in cands:
        compile(c.source, "candidate.py", "exec")
        assert "class ModelNew(Model)" in c.source and "SPACE = " in c.source


def test_backend_needs():
    assert backend_runs("triton", "h200") and backend_runs("cuda", "rtx6000-blackwell") and backend_runs("cpp", "cpu")
    assert not backend_runs("triton", "cpu") and not backend_runs("cpp", "h200") and not backend_runs("cuda", "m4")
    assert set(BACKEND_NEEDS["torch"]) == {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="unknown backend"):
        backend_runs("opencl", "h200")
