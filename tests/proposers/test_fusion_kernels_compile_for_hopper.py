"""The generated kernels lower through Triton's CUDA backend for sm_90 without a GPU (ptxas ships with Triton):
matmul epilogues, split-K, per-tile reductions and their finisher, row kernels and elementwise kernels; a float32
matmul with ``tf32x3`` products runs on Hopper's wgmma tensor-core instructions. Each compile runs in a fresh
process, away from the interpreter that the exactness tests turn on."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("triton")

from proposers.rewrites.problem import Problem, trace_problem  # noqa: E402
from proposers.templates import triton_fused  # noqa: E402

KB = pathlib.Path(__file__).resolve().parents[3] / "shared" / "kernelbench" / "head" / "level2"
AOT = pathlib.Path(__file__).with_name("fusion_aot.py")

CASES = [
    ("45_Gemm_Sigmoid_LogSumExp", {"precision": "tf32x3"}, {"_ks_seg0_gemm", "_ks_seg1_gemm", "_ks_seg1_fin"}),
    ("30_Gemm_GroupNorm_Hardtanh", {"SPLIT_K": 2}, {"_ks_seg0_gemm", "_ks_seg0_row"}),
    ("49_ConvTranspose3d_Softmax_Sigmoid", {"ROW_R": 16, "ROW_BLOCK": 64}, {"_ks_seg0_row"}),
    ("86_Matmul_Divide_GELU", {"precision": "ieee", "SPLIT_K": 4}, {"_ks_seg0_gemm", "_ks_seg0_flat"}),
]


@pytest.mark.skipif(not KB.is_dir(), reason=f"KernelBench not found at {KB}")
@pytest.mark.parametrize("pid, point, kernels", CASES, ids=[c[0].split("_")[0] for c in CASES])
def test_generated_kernels_compile_for_sm90(tmp_path, pid, point, kernels):
    problem = Problem.from_path(KB / f"{pid}.py")
    binding = triton_fused.bind(trace_problem(problem))
    src = triton_fused.render(problem, binding, point, None)
    cand = tmp_path / "candidate.py"
    cand.write_text(src)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    done = subprocess.run([sys.executable, str(AOT), str(cand), "90"], capture_output=True, text=True, env=env,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(ln) for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert {r["kernel"] for r in rows} == kernels
    for r in rows:
        if r["kernel"].endswith("_gemm") and point.get("precision") == "tf32x3":
            assert r["wgmma"], r
