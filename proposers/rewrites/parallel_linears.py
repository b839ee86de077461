"""Linears that read the same input merged into one wider GEMM (horizontal fusion).

Applies when two or more Linear layers (modules, ``F.linear`` or ``x @ P`` with constant ``P``) take the very same
input node, as Q/K/V projections or a SwiGLU's gate and up projections do. They become one ``F.linear`` on the
concatenated weights; each original output is a slice of its result (``torch.split`` along the last axis).
"""
from __future__ import annotations

import warnings

import torch
import torch.fx as fx

from proposers.rewrites.affine_parts import linear_parts

NAME = "parallel_linears"


def _groups(gm: fx.GraphModule) -> list[list[tuple[fx.Node, tuple]]]:
    by_input: dict[fx.Node, list[tuple[fx.Node, tuple]]] = {}
    for n in gm.graph.nodes:
        parts = linear_parts(n, gm)
        if parts is not None and isinstance(parts[0], fx.Node):
            by_input.setdefault(parts[0], []).append((n, parts))
    return [g for g in by_input.values() if len(g) >= 2]


def applies(gm: fx.GraphModule) -> bool:
    return bool(_groups(gm))


def transform(ctx) -> bool:
    gm, em = ctx.gm, ctx.em
    groups = _groups(gm)
    if not groups:
        return False
    graph = gm.graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for group in groups:
            x = group[0][1][0]
            w, split = em.fresh("wcat"), em.fresh("split")
            weights = [p[1] for _, p in group]
            em.derived[w] = "torch.cat([" + ", ".join(weights) + "], 0)"
            em.dtype_of[w] = group[0][1][3]
            em.attrs[split] = "[" + ", ".join(f"int(({c.replace('_ks_get', '_ks_raw')}).shape[0])" for c in weights) + "]"
            b = None
            if any(p[2] is not None for _, p in group):
                b = em.fresh("bcat")
                parts = [p[2].code if p[2] is not None else f"({p[1]}).new_zeros(({p[1]}).shape[0])"
                         for _, p in group]
                em.derived[b] = "torch.cat([" + ", ".join(parts) + "], 0)"
                em.dtype_of[b] = f"self.{w}"
            for name in (w, b):
                if name:
                    gm.register_buffer(name, torch.empty(0, device="meta"), persistent=False)
            setattr(gm, split, [])
            first = group[0][0]          # groups list their linears in graph order
            with graph.inserting_before(first):
                wn = graph.get_attr(w)
                bn = graph.get_attr(b) if b else None
                y = graph.call_function(torch.nn.functional.linear, (x, wn, bn))
                sizes = graph.get_attr(split)
                pieces = graph.call_function(torch.split, (y, sizes), {"dim": -1})
            for i, (n, _) in enumerate(group):
                with graph.inserting_before(first):
                    piece = graph.call_function(__import__("operator").getitem, (pieces, i))
                piece.meta = dict(n.meta)
                n.replace_all_uses_with(piece)
        graph.eliminate_dead_code()
    em.notes.append(f"{len(groups)} group(s) of parallel linears merged")
    return True
