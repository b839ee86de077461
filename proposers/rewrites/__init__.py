"""Rewrites of a problem's reference model: a bag of known, exact tricks applied through its torch.fx graph.

``REWRITES`` (in ``core``) names every rewrite; each is a module with ``applies(gm)``, ``transform(ctx)`` and
``rewrite(problem, params)``. ``RewritesProposer`` applies them all, alone and combined, eager and compiled.
"""
from proposers.rewrites.proposer import RewritesProposer

__all__ = ["RewritesProposer"]
