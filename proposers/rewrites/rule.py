"""Building an algebraic rewrite module from a set of affine-engine rules (see ``affine``)."""
from __future__ import annotations

from typing import Callable

import torch.fx as fx

from proposers.rewrites import affine


def make(rules: frozenset[str], required: frozenset[str] | None = None) -> tuple[Callable, Callable]:
    """``applies`` and ``transform`` functions for a rewrite using ``rules``; with ``required``, only regions that
    used one of those rules are replaced."""

    def applies(gm: fx.GraphModule) -> bool:
        return bool(affine.analyse(gm, rules, required))

    def transform(ctx) -> bool:
        regions = affine.analyse(ctx.gm, rules, required)
        if not regions:
            return False
        affine.materialize(ctx.gm, ctx.em, regions)
        return True

    return applies, transform
