"""Two pools in a row merged into one: ``pool_k2(pool_k1(x))`` is ``pool_(k1*k2)(x)``.

Applies to two max pools or two average pools of the same rank (modules or ``F.max_poolNd``/``F.avg_poolNd``) whose
windows do not overlap (stride equal to the kernel), with no padding, dilation 1, floor mode, no indices and no
divisor override, where the first pool's output has no other use. Windows of ``k2`` windows of ``k1`` consecutive
elements are windows of ``k1*k2`` consecutive elements, and ``floor(floor(n/k1)/k2) == floor(n/(k1*k2))``: the max
of maxima is the maximum, the mean of equal-size means is the mean. The intermediate tensor is never written.
The merged kernel size is derived from the modules' own attributes, so nothing is baked into the forward.
"""
from __future__ import annotations

import warnings

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from proposers.rewrites import match
from proposers.rewrites.affine_parts import as_tuple

NAME = "pool_merge"
_MAX_FN = {F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3, torch.max_pool1d: 1, torch.max_pool2d: 2,
           torch.max_pool3d: 3}
_AVG_FN = {F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3, torch._C._nn.avg_pool2d: 2, torch._C._nn.avg_pool3d: 3,
           torch.avg_pool1d: 1}
_MAX_MOD = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}
_AVG_MOD = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}


def _pool(n: fx.Node, gm: fx.GraphModule) -> tuple[str, int, tuple[int, ...], str] | None:
    """(kind, rank, kernel, code of the kernel in the candidate) of a non-overlapping pool, or None."""
    if n.op == "call_module":
        mod = match.module_of(n, gm)
        kind = "max" if type(mod) in _MAX_MOD else "avg" if type(mod) in _AVG_MOD else None
        if kind is None:
            return None
        nd = (_MAX_MOD if kind == "max" else _AVG_MOD)[type(mod)]
        ks, st, pad = as_tuple(mod.kernel_size, nd), as_tuple(mod.stride, nd), as_tuple(mod.padding, nd)
        if kind == "max":
            if as_tuple(mod.dilation, nd) != (1,) * nd or mod.return_indices:
                return None
        elif getattr(mod, "divisor_override", None) is not None:
            return None
        if ks is None or st != ks or pad != (0,) * nd or mod.ceil_mode:
            return None
        return kind, nd, ks, f"_ks_ntuple(self.get_submodule({n.target!r}).kernel_size, {nd})"
    if n.op != "call_function":
        return None
    try:
        kind = "max" if n.target in _MAX_FN else "avg" if n.target in _AVG_FN else None
    except TypeError:
        return None
    if kind is None:
        return None
    nd = (_MAX_FN if kind == "max" else _AVG_FN)[n.target]
    ks = as_tuple(match.arg(n, 1, "kernel_size"), nd)
    st = match.arg(n, 2, "stride")
    st = ks if st is None or st == [] or st == () else as_tuple(st, nd)
    pad = as_tuple(match.arg(n, 3, "padding", 0), nd)
    if kind == "max":
        extra = (as_tuple(match.arg(n, 4, "dilation", 1), nd) == (1,) * nd
                 and match.arg(n, 5, "ceil_mode", False) is False and match.arg(n, 6, "return_indices", False) is False)
    else:
        extra = match.arg(n, 4, "ceil_mode", False) is False and match.arg(n, 6, "divisor_override") is None
    if ks is None or st != ks or pad != (0,) * nd or not extra:
        return None
    return kind, nd, ks, repr(ks)


def _pairs(gm: fx.GraphModule) -> list[tuple[fx.Node, fx.Node, tuple, tuple]]:
    out, used = [], set()
    for n in gm.graph.nodes:
        second = _pool(n, gm)
        x = n.args[0] if n.args else None
        if second is None or not isinstance(x, fx.Node) or x in used or len(x.users) != 1:
            continue
        first = _pool(x, gm)
        if first is None or first[:2] != second[:2] or not isinstance(x.args[0], fx.Node):
            continue
        out.append((x, n, first, second))
        used.update((x, n))
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
        for first_node, second_node, first, second in pairs:
            kind, nd = first[0], first[1]
            name = em.fresh("pool")
            em.attrs[name] = f"tuple(a * b for a, b in zip({first[3]}, {second[3]}))"
            setattr(gm, name, ())
            fn = {("max", 1): F.max_pool1d, ("max", 2): F.max_pool2d, ("max", 3): F.max_pool3d,
                  ("avg", 1): F.avg_pool1d, ("avg", 2): F.avg_pool2d, ("avg", 3): F.avg_pool3d}[(kind, nd)]
            with graph.inserting_before(second_node):
                k = graph.get_attr(name)
                new = graph.call_function(fn, (first_node.args[0], k, k))
            new.meta = dict(second_node.meta)
            second_node.replace_all_uses_with(new)
        graph.eliminate_dead_code()
    em.notes.append(f"{len(pairs)} pair(s) of pools merged")
    return True
