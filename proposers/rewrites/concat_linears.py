"""The sum of two Linears on different inputs computed as one GEMM on the concatenated inputs.

Applies when ``fc1(x) + fc2(h)`` adds the outputs of two Linear layers (modules, ``F.linear`` or ``@`` a constant)
whose inputs differ but have the same shape except the last axis, and neither output has another use (an LSTM
cell's gates). It becomes ``F.linear(torch.cat([x, h], -1), [W1 | W2], b1 + b2)``: one GEMM with a longer
reduction and no separate add.
"""
from __future__ import annotations

import warnings

import torch
import torch.fx as fx

from proposers.rewrites import match
from proposers.rewrites.affine_parts import linear_parts

NAME = "concat_linears"


def _pairs(gm: fx.GraphModule) -> list[tuple[fx.Node, tuple, tuple]]:
    out = []
    for n in gm.graph.nodes:
        if match.kind(n, gm) != "add" or len(n.args) != 2 or n.kwargs:
            continue
        a, b = n.args
        if not all(isinstance(v, fx.Node) and len(v.users) == 1 for v in (a, b)):
            continue
        pa, pb = linear_parts(a, gm), linear_parts(b, gm)
        if pa is None or pb is None or pa[0] is pb[0]:
            continue
        sa, sb, so = match.shape(pa[0]), match.shape(pb[0]), match.shape(n)
        if not sa or not sb or sa[:-1] != sb[:-1] or match.shape(a) != so or match.shape(b) != so:
            continue
        out.append((n, pa, pb))
    return out


def applies(gm: fx.GraphModule) -> bool:
    return bool(_pairs(gm))


def transform(ctx) -> bool:
    gm, em = ctx.gm, ctx.em
    pairs = _pairs(gm)
    if not pairs:
        return False
    graph = gm.graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n, pa, pb in pairs:
            w = em.fresh("wcat")
            em.derived[w] = f"torch.cat([{pa[1]}, {pb[1]}], 1)"
            em.dtype_of[w] = pa[3]
            biases = [p[2].code for p in (pa, pb) if p[2] is not None]
            b = None
            if biases:
                b = em.fresh("bsum")
                em.derived[b] = " + ".join(f"({c})" for c in biases)
                em.dtype_of[b] = f"self.{w}"
            for name in (w, b):
                if name:
                    gm.register_buffer(name, torch.empty(0, device="meta"), persistent=False)
            with graph.inserting_before(n):
                xh = graph.call_function(torch.cat, ([pa[0], pb[0]],), {"dim": -1})
                wn = graph.get_attr(w)
                bn = graph.get_attr(b) if b else None
                y = graph.call_function(torch.nn.functional.linear, (xh, wn, bn))
            y.meta = dict(n.meta)
            n.replace_all_uses_with(y)
        graph.eliminate_dead_code()
    em.notes.append(f"{len(pairs)} sum(s) of linears on different inputs concatenated")
    return True
