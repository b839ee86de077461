"""Rewrites of a problem's reference model: a bag of known, exact tricks applied through its torch.fx graph.

``REWRITES`` (in ``core``) names every rewrite; each graph rewrite is a module with ``applies(gm)`` and
``transform(ctx)``, and ``compile`` holds the compiler's option space. ``RewritesProposer`` applies them all, alone
and combined, eager and compiled (``core.generate(problem, names, params)``).
"""
from proposers.rewrites.proposer import RewritesProposer

__all__ = ["RewritesProposer"]
