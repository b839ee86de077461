"""Average pooling after a convolution merged into one strided convolution.

Applies when AvgPool (module or functional; no padding, no ceil mode, no divisor override) follows a convolution
with dilation 1. conv(k, stride s) then pool(p, stride q) equals one conv with kernel ``k + s(p-1)``, stride ``s*q``
and the kernel averaged over the window: fewer multiply-adds than the conv alone whenever ``q > 1``."""
from proposers.rewrites import rule

NAME = "conv_pool_fold"
RULES = frozenset({"pool", "scale_bias"})
REQUIRED = frozenset({"pool"})
applies, transform = rule.make(RULES, REQUIRED)
