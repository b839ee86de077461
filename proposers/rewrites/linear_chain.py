"""Stacked linear maps merged into one Linear.

Applies when a Linear (module or ``F.linear``), a ``x @ P`` with a constant ``P``, or a 1x1 convolution is applied to
the output of another one (or of a chain of them) with no non-linearity between, and every intermediate result has
no other use. ``fc2(fc1(x))`` becomes ``F.linear(x, W2 @ W1, W2 @ b1 + b2)``."""
from proposers.rewrites import rule

NAME = "linear_chain"
RULES = frozenset({"chain"})
REQUIRED = frozenset({"chain"})
applies, transform = rule.make(RULES, REQUIRED)
