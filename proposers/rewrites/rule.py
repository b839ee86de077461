"""Building an algebraic rewrite module from a set of affine-engine rules (see ``affine``)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import torch.fx as fx

from proposers.rewrites import affine


def make(name: str, rules: frozenset[str],
         required: frozenset[str] | None = None) -> tuple[Callable, Callable, Callable]:
    """``applies``, ``transform`` and ``rewrite`` functions for the rewrite ``name`` using ``rules``; with
    ``required``, only regions that used one of those rules are replaced."""

    def applies(gm: fx.GraphModule) -> bool:
        return bool(affine.analyse(gm, rules, required))

    def transform(ctx) -> bool:
        regions = affine.analyse(ctx.gm, rules, required)
        if not regions:
            return False
        affine.materialize(ctx.gm, ctx.em, regions)
        return True

    def rewrite(problem, params: Mapping[str, Any] | None = None) -> str | None:
        from proposers.rewrites.core import generate
        return generate(problem, [name], params)

    return applies, transform, rewrite
