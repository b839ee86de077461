"""Per-feature (or scalar) scales and shifts folded into the preceding Linear or convolution.

Applies when a Linear/convolution output is multiplied, divided, shifted or negated by constants (parameters,
buffers or literals) that broadcast per output feature (shape ``(C,)``, ``(C, 1, 1)``, ``(1, C)``...) or as a
scalar, and the intermediate results have no other use. ``conv(x) * s + t`` becomes one conv with ``W * s`` and
``b * s + t``."""
from proposers.rewrites import rule

NAME = "scale_bias_fold"
RULES = frozenset({"scale_bias"})
applies, transform = rule.make(RULES)
