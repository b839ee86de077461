"""Sums and means re-associated with the Linear before them.

Applies when a Linear/convolution region is summed or averaged over its feature axis (``fc(x).sum(-1)`` is
``x @ W.sum(0) + b.sum()``: one output feature instead of many), or averaged over other axes (``fc(x).mean(1)`` is
``fc(x.mean(1))``, the Linear then runs on far fewer rows; a bias-free region may also be summed)."""
from proposers.rewrites import rule

NAME = "reduce_reassoc"
RULES = frozenset({"reduce_features", "reduce_commute", "scale_bias"})
REQUIRED = frozenset({"reduce_features", "reduce_commute"})
applies, transform = rule.make(RULES, REQUIRED)
