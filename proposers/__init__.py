"""Proposers: where candidates come from.

Look one up by kind with ``get_proposer``; the implementation is imported only when asked for.
"""
from __future__ import annotations

import importlib
from typing import Any

from proposers.base import Candidate, Failure, FrozenParams, Proposer, ProblemView, Scored, StaticView

_REGISTRY: dict[str, str] = {
    "rewrites": "proposers.rewrites:RewritesProposer",
    "optuna": "proposers.optuna_tuner:OptunaProposer",
    "files": "proposers.files:FilesProposer",
    "fusion": "proposers.fusion.proposer:FusionProposer",
    "cuda_graphs": "proposers.fusion.cuda_graphs:GraphsProposer",
    "llm": "proposers.llm:LLMProposer",
}


def proposer_kinds() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def get_proposer(kind: str, **options: Any) -> Proposer:
    """A new proposer of ``kind`` built with ``options``. An unknown kind raises ``ValueError`` naming the valid ones."""
    try:
        target = _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown proposer kind {kind!r}; valid kinds: {', '.join(proposer_kinds())}") from None
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return cls(**options)


__all__ = [
    "Candidate", "Failure", "FrozenParams", "Proposer", "ProblemView", "Scored", "StaticView",
    "get_proposer", "proposer_kinds",
]
