"""The elementwise affine of a LayerNorm/RMSNorm folded into the Linear that follows it.

Applies when a LayerNorm or RMSNorm over the last axis with a learnt weight feeds (only) a Linear.
``fc(ln(x))`` becomes ``F.linear(F.layer_norm(x, shape, None, None, eps), W * g, W @ beta + b)``."""
from proposers.rewrites import rule

NAME = "norm_affine_fold"
RULES = frozenset({"norm_affine"})
REQUIRED = frozenset({"norm_affine"})
applies, transform = rule.make(RULES, REQUIRED)
