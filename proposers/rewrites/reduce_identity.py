"""Reductions over axes of size 1 removed: they return their input.

Applies to ``sum``, ``mean``, ``amax``, ``amin``, ``logsumexp`` and the values of ``max``/``min`` along ``dim`` (module-
free spellings: ``torch.f(x, dim)``, ``x.f(dim)``) of a floating-point tensor when every reduced axis has size 1 at
every scale: the sum, mean, maximum or log-sum-exp of one element is that element, bit for bit (NaN and infinities
included). ``keepdim=False`` becomes a ``squeeze`` of those axes. Common after a reduction that already left size 1
(``x.sum(1, keepdim=True).max(1, keepdim=True)...``, a global pool applied twice). Declines when the graph mutates
tensors in place or the result would be an output that aliases an input.
"""
from __future__ import annotations

import operator
import warnings

import torch
import torch.fx as fx

from proposers.rewrites import match
from proposers.rewrites.problem import node_shape

NAME = "reduce_identity"
_FUNCTIONS = {torch.sum: "sum", torch.mean: "mean", torch.amax: "amax", torch.amin: "amin",
              torch.logsumexp: "logsumexp", torch.max: "max", torch.min: "min"}
_METHODS = {"sum", "mean", "amax", "amin", "logsumexp", "max", "min"}


def _kind(n: fx.Node) -> str | None:
    if n.op == "call_method" and n.target in _METHODS:
        return n.target
    if n.op == "call_function":
        try:
            return _FUNCTIONS.get(n.target)
        except TypeError:
            return None
    return None


def _candidates(gm: fx.GraphModule) -> list[tuple[fx.Node, fx.Node, tuple[int, ...], bool, list[fx.Node]]]:
    """(reduction, input, dims, keepdim, the nodes to replace)"""
    if match.mutates_in_place(gm):
        return []
    out = []
    for n in gm.graph.nodes:
        k = _kind(n)
        if k is None or not n.args or not isinstance(n.args[0], fx.Node):
            continue
        x = n.args[0]
        shape = node_shape(x)
        tm = x.meta.get("tensor_meta")
        if shape is None or tm is None or not tm.dtype.is_floating_point or n.kwargs.get("dtype") is not None:
            continue
        dim = match.arg(n, 1, "dim")
        keepdim = match.arg(n, 2, "keepdim", False)
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        if not dims or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims) \
                or not isinstance(keepdim, bool) or not shape:
            continue
        rank = len(shape)
        if any(not -rank <= d < rank for d in dims):
            continue
        dims = tuple(sorted({d % rank for d in dims}))
        if any(shape[d] != 1 for d in dims):
            continue
        if k in ("max", "min"):
            # (values, indices): only the values may be used
            users = list(n.users)
            if not users or not all((u.op == "call_function" and u.target is operator.getitem and u.args[1] == 0)
                                    or (u.op == "call_function" and u.target is getattr and u.args[1] == "values")
                                    for u in users):
                continue
            replaced = users
        else:
            replaced = [n]
        if x.op == "placeholder" and any(match.reaches_output_as_view(r) for r in replaced):
            continue
        out.append((n, x, dims, keepdim, replaced))
    return out


def applies(gm: fx.GraphModule) -> bool:
    return bool(_candidates(gm))


def transform(ctx) -> bool:
    gm = ctx.gm
    found = _candidates(gm)
    if not found:
        return False
    graph = gm.graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n, x, dims, keepdim, replaced in found:
            for r in replaced:
                new = x
                if not keepdim:
                    with graph.inserting_before(r):
                        new = graph.call_function(torch.squeeze, (x, dims))
                    new.meta = dict(r.meta)
                r.replace_all_uses_with(new)
        graph.eliminate_dead_code()
    ctx.em.notes.append(f"{len(found)} reduction(s) over size-1 axes removed")
    return True
