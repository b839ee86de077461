"""Average pooling computed as a convolution with a constant averaging kernel.

Applies to ``nn.AvgPool1d``/``nn.AvgPool2d`` (or ``F.avg_pool1d``/``F.avg_pool2d``) without ceil mode or divisor
override, whose padding is zero or counted in the average (``count_include_pad=True``): then every window is
divided by the full window size, exactly what a convolution with weights ``1/k`` does. Channels are folded into
the batch, so one single-channel kernel serves any channel count.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.fx as fx
import torch.nn.functional as F

from proposers.rewrites import match
from proposers.rewrites.affine_parts import as_tuple
from proposers.rewrites.problem import node_shape

NAME = "avgpool_conv"


def _pool(n: fx.Node, gm: fx.GraphModule) -> tuple[int, tuple, tuple, tuple] | None:
    if match.kind(n, gm) != "avg_pool":
        return None
    x = n.args[0] if n.args else None
    rank = len(node_shape(x) or ()) if isinstance(x, fx.Node) else 0
    nd = rank - 2
    if nd not in (1, 2):
        return None
    mod = match.module_of(n, gm)
    if mod is not None:
        ks, st, pad = mod.kernel_size, mod.stride, mod.padding
        ceil, incl, div = mod.ceil_mode, mod.count_include_pad, getattr(mod, "divisor_override", None)
    else:
        ks, st, pad = match.arg(n, 1, "kernel_size"), match.arg(n, 2, "stride"), match.arg(n, 3, "padding", 0)
        ceil, incl = match.arg(n, 4, "ceil_mode", False), match.arg(n, 5, "count_include_pad", True)
        div = match.arg(n, 6, "divisor_override")
    ks = as_tuple(ks, nd)
    st = ks if st is None or st == [] or st == () else as_tuple(st, nd)
    pad = as_tuple(pad, nd)
    if ks is None or st is None or pad is None or ceil is not False or div is not None:
        return None
    if any(pad) and incl is not True:
        return None
    return nd, ks, st, pad


def applies(gm: fx.GraphModule) -> bool:
    return any(_pool(n, gm) for n in gm.graph.nodes)


def transform(ctx) -> bool:
    gm, em = ctx.gm, ctx.em
    pools = [(n, _pool(n, gm)) for n in gm.graph.nodes]
    pools = [(n, p) for n, p in pools if p]
    if not pools:
        return False
    graph = gm.graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n, (nd, ks, st, pad) in pools:
            k = em.fresh("avgk")
            em.derived[k] = (f"torch.full((1, 1, {', '.join(map(str, ks))}), 1.0 / {math.prod(ks)}, "
                             f"dtype=torch.float32, device=_ks_device(self, {k!r}))")
            gm.register_buffer(k, torch.empty(0, device="meta"), persistent=False)
            x = n.args[0]
            with graph.inserting_before(n):
                shape = graph.call_function(getattr, (x, "shape"))
                lead = graph.call_function(__import__("operator").getitem, (shape, slice(0, 2)))
                flat = graph.call_method("unsqueeze", (graph.call_method("flatten", (x, 0, 1)), 1))
                conv = graph.call_function(F.conv1d if nd == 1 else F.conv2d,
                                           (flat, graph.get_attr(k), None, st, pad))
                new = graph.call_method("squeeze", (graph.call_method("unflatten", (conv, 0, lead)), 2))
            new.meta = dict(n.meta)
            n.replace_all_uses_with(new)
        graph.eliminate_dead_code()
    em.notes.append(f"{len(pools)} average pool(s) as convolution")
    return True
