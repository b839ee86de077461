"""Triton kernels generated from the problem's graph: matmuls with their epilogue, and fused chains.

Binds wherever ``proposers.fusion.plan`` finds a segment: a matmul (tiles, warps, stages, group size, split-K,
``ieee`` or ``tf32x3`` float32 products; or cuBLAS through ``torch.mm`` with the chain in one kernel after it) and
chains around a row operation or after a convolution. The space holds only the dimensions the bound segments use.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

from proposers.fusion.plan import plan, render as render_plan
from proposers.rewrites.problem import Problem, Traced, trace_problem
from proposers.templates import Choice, IntRange, InvalidPoint, Pow2, manifest

FAMILY = "triton_fused"
BACKEND = "triton"
DEVICES = ("cuda",)

log = logging.getLogger(__name__)

GEMM_SPACE = {
    "gemm": Choice(("triton", "torch")),
    "precision": Choice(("ieee", "tf32x3")),
    "BLOCK_M": Pow2(16, 256), "BLOCK_N": Pow2(16, 256), "BLOCK_K": Pow2(16, 128),
    "GROUP_M": Pow2(1, 16), "SPLIT_K": Pow2(1, 8), "num_warps": Pow2(2, 8), "num_stages": IntRange(1, 5),
}
ROW_SPACE = {"ROW_R": Pow2(1, 64), "ROW_BLOCK": Pow2(16, 8192), "row_warps": Pow2(1, 16)}
FLAT_SPACE = {"FLAT_BLOCK": Pow2(128, 8192), "flat_warps": Pow2(1, 16)}

DEFAULT = {"gemm": "triton", "precision": "ieee", "BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32, "GROUP_M": 8,
           "SPLIT_K": 1, "num_warps": 8, "num_stages": 3, "ROW_R": 1, "ROW_BLOCK": 1024, "row_warps": 4,
           "FLAT_BLOCK": 1024, "flat_warps": 4}

SMEM_BYTES = 227 * 1024        # the H200's shared memory per block (Hopper opt-in limit)


@functools.lru_cache(maxsize=32)
def _traced(path: str, source: str) -> Traced | None:
    return trace_problem(Problem(path, source))


def bind(traced: Traced) -> dict[str, Any] | None:
    segments = plan(traced)
    if not segments:
        return None
    return {"segments": len(segments), "gemm": any(s.kind == "gemm" for s in segments),
            "rows": any(s.chain.pivot is not None for s in segments),
            "flat": any(s.chain.pivot is None for s in segments),
            # rows whose elements lie a spatial size apart (a softmax or reduction over channels): many rows a program
            "strided_rows": any(s.chain.pivot is not None and s.chain.pivot.mode == "feat" and len(s.chain.shape) > 2
                                for s in segments)}


def space(binding: dict[str, Any], cores: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if binding.get("gemm"):
        out.update(GEMM_SPACE)
    if binding.get("rows") or binding.get("gemm"):
        out.update(ROW_SPACE)
    if binding.get("flat") or binding.get("gemm"):
        out.update(FLAT_SPACE)
    return out


def check(point: dict[str, Any]) -> None:
    """Raise ``InvalidPoint`` for a point that cannot compile or cannot fit the chip."""
    for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "ROW_R", "ROW_BLOCK", "FLAT_BLOCK", "num_warps", "row_warps",
              "flat_warps", "GROUP_M", "SPLIT_K"):
        v = int(point[k])
        if v < 1 or v & (v - 1):
            raise InvalidPoint(f"{k}={v} is not a power of two")
    if point["gemm"] == "triton":
        threads = 32 * int(point["num_warps"])
        if point["BLOCK_M"] * point["BLOCK_N"] // threads > 256:
            raise InvalidPoint("the accumulator tile needs more than 256 registers a thread")
        stage = 4 * (point["BLOCK_M"] + point["BLOCK_N"]) * point["BLOCK_K"]
        if stage * max(1, int(point["num_stages"])) > SMEM_BYTES:
            raise InvalidPoint(f"{point['num_stages']} stages of {stage} bytes exceed shared memory")
    if point["ROW_R"] * point["ROW_BLOCK"] // (32 * int(point["row_warps"])) > 128:
        raise InvalidPoint("the row tile needs more than 128 registers a thread")
    if point["FLAT_BLOCK"] // (32 * int(point["flat_warps"])) > 64:
        raise InvalidPoint("the elementwise block needs more than 64 values a thread")


def full_point(point: dict[str, Any]) -> dict[str, Any]:
    p = dict(DEFAULT)
    p.update(point)
    return p


def render(problem: Problem, binding: dict[str, Any], point: dict[str, Any], build_dir: str | None) -> str:
    p = full_point(point)
    check(p)
    traced = _traced(problem.path, problem.source)
    if traced is None:
        raise InvalidPoint(f"{problem.problem_id} no longer traces")
    segments = plan(traced)
    manifest_src = f"SPACE = {manifest(space(binding, 1))!r}\nPOINT = {dict(sorted(point.items()))!r}\n"
    return render_plan(traced, segments, p, f"{FAMILY} ({len(segments)} segment(s))", manifest_src)
