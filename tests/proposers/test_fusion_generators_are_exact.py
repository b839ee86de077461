"""The fusion generator's kernels give the reference's values within the verifier's float32 tolerance, on random
graphs (a linear layer, a matmul, a convolution or the input, then elementwise steps, a row operation and steps after
it), random sizes, inputs and tuning points. On the CPU through Triton's interpreter; on a CUDA device for real."""
from __future__ import annotations

import os
import sys

import pytest
import torch

# Without a CUDA device the kernels run in Triton's interpreter, which must be on before Triton is imported (its own
# library functions are jitted then); the tests skip when another module imported Triton without it.
INTERPRETED = not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"
_LATE = INTERPRETED and "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1"
if INTERPRETED:
    os.environ["TRITON_INTERPRET"] = "1"

triton = pytest.importorskip("triton")

from hypothesis import HealthCheck, assume, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fusion_problems import problem_source, specs  # noqa: E402
from harness import build_pair, max_violation  # noqa: E402
from proposers.fusion.plan import plan, render  # noqa: E402
from proposers.rewrites.problem import Problem, trace_problem  # noqa: E402
from proposers.templates import triton_fused  # noqa: E402



@st.composite
def points(draw, small: bool = True):
    blocks = [16, 32] if small else [16, 32, 64, 128]
    return triton_fused.full_point({
        "gemm": draw(st.sampled_from(["triton", "torch"])),
        "precision": draw(st.sampled_from(["ieee", "tf32x3"])),
        "BLOCK_M": draw(st.sampled_from(blocks)), "BLOCK_N": draw(st.sampled_from(blocks)),
        "BLOCK_K": draw(st.sampled_from(blocks)), "GROUP_M": draw(st.sampled_from([1, 2, 8])),
        "SPLIT_K": draw(st.sampled_from([1, 2, 4])), "num_warps": 4, "num_stages": 2,
        "ROW_R": draw(st.sampled_from([1, 2, 4])), "ROW_BLOCK": draw(st.sampled_from([16, 32])),
        "FLAT_BLOCK": draw(st.sampled_from([128, 256])),
    })


def _check(spec: dict, point: dict, device: str, seed: int) -> None:
    src = problem_source(spec)
    problem = Problem(f"/fusion/{abs(hash(src))}.py", src)
    traced = trace_problem(problem)
    assert traced is not None, src
    segments = plan(traced)
    assume(segments)
    cand = render(traced, segments, point, "test")
    ref, new, mod = build_pair(src, cand)
    ref, new = ref.to(device).eval(), new.to(device).eval()        # as the evaluator runs them
    torch.manual_seed(seed)
    inputs = [t.to(device) for t in mod.get_inputs()]
    with torch.no_grad():
        want, got = ref(*inputs), new(*inputs)
    assert max_violation(want, got) <= 0, f"{spec}\n{point}\n{cand}"


@pytest.mark.skipif(not INTERPRETED or _LATE, reason="needs Triton's interpreter on before Triton is imported")
@settings(max_examples=16, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(spec=specs(), point=points(), seed=st.integers(0, 3))
@example(spec={"anchor": "linear", "m": 5, "k": 20, "n": 6, "groups": 2, "bias": True, "pre": ["mul_scale", "bn", "gelu"],
               "pivot": "softmax", "post": ["dropout"]}, point=triton_fused.full_point({"SPLIT_K": 2}), seed=0)
@example(spec={"anchor": "conv", "m": 2, "k": 3, "n": 5, "groups": 1, "bias": True, "pre": ["bn", "tanh", "add_bias"],
               "pivot": None, "post": []}, point=triton_fused.full_point({"FLAT_BLOCK": 128}), seed=1)
@example(spec={"anchor": "conv", "m": 2, "k": 3, "n": 4, "groups": 2, "bias": True, "pre": ["relu"],
               "pivot": "instance_norm", "post": ["hardswish"]}, point=triton_fused.full_point({"ROW_R": 2}), seed=2)
def test_generated_kernels_match_the_reference_on_the_cpu(spec, point, seed):
    _check(spec, point, "cpu", seed)


@pytest.mark.skipif(not INTERPRETED or _LATE, reason="needs Triton's interpreter on before Triton is imported")
@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(spec=specs(anchors=("linear", "matmul")), point=points(), seed=st.integers(0, 3))
def test_matmul_epilogues_match_the_reference_on_the_cpu(spec, point, seed):
    _check(spec, point, "cpu", seed)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available() or INTERPRETED, reason="needs a CUDA device (and no interpreter)")
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(spec=specs(), point=points(small=False), seed=st.integers(0, 3))
def test_generated_kernels_match_the_reference_on_cuda(spec, point, seed):
    _check(spec, point, "cuda", seed)
