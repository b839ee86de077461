"""A residual connection around a Linear folded into its weight: ``x + fc(x)`` uses ``W + I``.

Applies when the input of a square Linear region is added to (or subtracted from) its output, or when two Linear
regions on the same input are added or subtracted (``fc1(x) + fc2(x)`` uses ``W1 + W2``)."""
from proposers.rewrites import rule

NAME = "residual_fold"
RULES = frozenset({"residual", "scale_bias"})
REQUIRED = frozenset({"residual"})
applies, transform = rule.make(RULES, REQUIRED)
