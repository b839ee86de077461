"""Building an algebraic rewrite module from a set of affine-engine rules (see ``affine``)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import torch.fx as fx

from proposers.rewrites import affine


def make(name: str, rules: frozenset[str]) -> tuple[Callable, Callable, Callable]:
    """``applies``, ``transform`` and ``rewrite`` functions for the rewrite ``name`` using ``rules``."""

    def applies(gm: fx.GraphModule) -> bool:
        return bool(affine.analyse(gm, rules))

    def transform(ctx) -> bool:
        regions = affine.analyse(ctx.gm, rules)
        if not regions:
            return False
        affine.materialize(ctx.gm, ctx.em, regions)
        return True

    def rewrite(problem, params: Mapping[str, Any] | None = None) -> str | None:
        from proposers.rewrites.core import generate
        return generate(problem, [name], params)

    return applies, transform, rewrite
