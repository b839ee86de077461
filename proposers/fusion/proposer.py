"""``FusionProposer``: generated Triton kernels for a problem at a few points known to suit Hopper-class GPUs.

The points go from the likeliest winner to the safest: float32 products through three TF32 passes (``tf32x3``,
tensor cores at close to float32 accuracy, which the verifier judges like any candidate), then plain ``ieee``
products, then cuBLAS with the chain fused after it. The Optuna tuner explores the rest of the space
(``templates.triton_fused``). Proposes only for a hardware class whose device runs Triton (``backend_runs``).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from proposers.backends import backend_runs
from proposers.base import Candidate, Proposer, ProblemView
from proposers.rewrites.problem import Problem, ProblemError, trace_problem
from proposers.templates import InvalidPoint, triton_fused

log = logging.getLogger(__name__)

_GEMM_POINTS: list[dict[str, Any]] = [
    {"gemm": "triton", "precision": "tf32x3", "BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32, "GROUP_M": 8,
     "num_warps": 8, "num_stages": 3},
    {"gemm": "torch"},
    {"gemm": "triton", "precision": "tf32x3", "BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8,
     "num_warps": 4, "num_stages": 4},
    {"gemm": "triton", "precision": "ieee", "BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 16, "GROUP_M": 8,
     "num_warps": 8, "num_stages": 3},
    {"gemm": "triton", "precision": "tf32x3", "BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32, "GROUP_M": 8,
     "num_warps": 4, "num_stages": 3, "SPLIT_K": 2},
    {"gemm": "triton", "precision": "ieee", "BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8,
     "num_warps": 4, "num_stages": 3},
]
_ROW_POINTS: list[dict[str, Any]] = [
    {"ROW_R": 1, "ROW_BLOCK": 2048, "row_warps": 8, "FLAT_BLOCK": 1024, "flat_warps": 4},
    {"ROW_R": 16, "ROW_BLOCK": 64, "row_warps": 4, "FLAT_BLOCK": 2048, "flat_warps": 8},
    {"ROW_R": 4, "ROW_BLOCK": 512, "row_warps": 4, "FLAT_BLOCK": 512, "flat_warps": 4},
]


def points(binding: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The starting points for a binding, likeliest first."""
    rows = list(_ROW_POINTS)
    if binding.get("strided_rows"):
        rows = [rows[1], rows[0], rows[2]]
    if binding.get("gemm"):
        return [dict(g, **rows[i % len(rows)]) for i, g in enumerate(_GEMM_POINTS)]
    return [dict(r) for r in rows]


class FusionProposer(Proposer):
    name = "fusion"

    def __init__(self) -> None:
        self._proposed: set[str] = set()

    def propose(self, view: ProblemView, budget: int) -> list[Candidate]:
        if budget <= 0 or not backend_runs(triton_fused.BACKEND, view.hardware):
            return []
        try:
            problem = Problem.from_path(view.problem_path)
        except ProblemError as e:
            log.warning("fusion: %s", e)
            return []
        traced = trace_problem(problem)
        binding = triton_fused.bind(traced) if traced is not None else None
        if binding is None:
            return []
        out: list[Candidate] = []
        for point in points(binding):
            if len(out) >= budget:
                break
            try:
                source = triton_fused.render(problem, binding, point, view.cache_dir)
            except InvalidPoint as e:
                log.debug("fusion point skipped on %s: %s", view.problem_id, e)
                continue
            except Exception:  # a generator bug must not stop the campaign: log it and go on
                log.exception("fusion failed on %s", view.problem_id)
                break
            params = {"template": triton_fused.FAMILY, "point": point}
            c = Candidate(source=source, params=params, proposer=self.name, backend=triton_fused.BACKEND,
                          hardware=view.hardware, problem_id=view.problem_id)
            if c.id in self._proposed:
                continue
            self._proposed.add(c.id)
            out.append(c)
        return out

    def get_state(self) -> dict[str, Any]:
        return {"proposed": sorted(self._proposed)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._proposed = set(state.get("proposed", ()))
