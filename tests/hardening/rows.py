"""Real population rows for the hardening tests: a real Candidate and EvalResult through ``row_from_result``."""
from __future__ import annotations

from evaluators.result import EvalResult, Status
from proposers.base import Candidate
from search.schema import Placement, row_from_result


def candidate(tag: str) -> Candidate:
    return Candidate(source=f"import torch\n\n\nclass ModelNew(torch.nn.Module):\n    # {tag}\n"
                            "    def forward(self, x):\n        return x + 1\n", proposer="rewrites")


def row(tag: str, problem: str = "/p/level1/add_one.py") -> dict:
    result = EvalResult(status=Status.COMPILE_ERROR, reason=f"fixture {tag}", device="cpu")
    return row_from_result(result, candidate(tag), Placement(campaign="hardening", problem_path=problem))
