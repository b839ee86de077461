"""Every algebraic rule of the affine engine at once (chains, scales and shifts, BatchNorm, norm affine,
residuals, reductions, pooling).

Applies when any of them does; merged regions then span all of them, which is where the large wins come from."""
from proposers.rewrites import affine, rule

NAME = "algebraic"
RULES = affine.ALL_RULES
applies, transform = rule.make(RULES)
