"""Inference-mode BatchNorm folded into the preceding convolution or Linear.

Applies when a BatchNorm module that is in eval mode at construction (with running statistics), or
``F.batch_norm(..., training=False)`` with constant statistics, follows a convolution (any rank) or a Linear on a
2-D input. The candidate falls back to the reference forward whenever that BatchNorm is put in training mode, and
re-derives the folded weights on every ``train``/``eval`` switch and state-dict load."""
from proposers.rewrites import rule

NAME = "bn_fold"
RULES = frozenset({"bn"})
REQUIRED = frozenset({"bn"})
applies, transform = rule.make(RULES, REQUIRED)
