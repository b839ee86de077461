"""The affine-region engine behind the algebraic rewrites.

Walking the graph in order, each node that is an affine map of some earlier ``base`` node along its feature axis
gets a ``Rep``: ``value = base' @ A^T + c`` (for convolutions, ``conv(base', A) + c``), where ``base'`` is ``base``
after cheap base operations (a norm without its affine part, a mean over non-feature axes). A region grows through
the operations its rules allow, as long as each intermediate value has no other user. A region holding at least one
Linear or convolution and at least two operations is replaced by one ``F.linear``/``F.convNd`` whose weight and bias
are derived buffers (computed in float64 from the reference's parameters, then cast).

Rules (each a named switch, so that every algebraic rewrite is one rule set):
- ``chain``: a Linear (or ``x @ P``, or a 1x1 convolution) applied to a region is merged into it.
- ``scale_bias``: multiplication, division, addition, subtraction or negation by a per-feature or scalar constant.
- ``bn``: an inference-mode BatchNorm after a Linear or convolution.
- ``norm_affine``: the elementwise affine of a LayerNorm/RMSNorm over the last axis, folded into the next Linear.
- ``residual``: ``base + region`` (A + I) and the sum or difference of two regions with the same base.
- ``reduce_features``: sum or mean over the feature axis (a single output feature).
- ``reduce_commute``: mean (or bias-free sum) over non-feature axes moved before the Linear.
- ``pool``: average pooling after a convolution, merged into a strided convolution with a larger kernel.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from proposers.rewrites import match
from proposers.rewrites.affine_parts import (Mat, Rep, Vec, as_tuple, compose, conv_parts, linear_parts, madd,
                                            matvec, mneg, norm_affine_of, scale_rows, vadd, vmul, vneg)
from proposers.rewrites.codegen import Emission
from proposers.rewrites.problem import node_shape

ALL_RULES = frozenset({"chain", "scale_bias", "bn", "norm_affine", "residual", "reduce_features",
                       "reduce_commute", "pool"})



def _seed(n: fx.Node, gm: fx.GraphModule, rules: frozenset[str]) -> Rep | None:
    lin = linear_parts(n, gm)
    if lin is not None:
        x, w, b, dt = lin
        if isinstance(x, fx.Node):
            return Rep("linear", x, (), Mat(w), b, nlin=1, nops=1, dtype_src=dt)
    conv = conv_parts(n, gm)
    if conv is not None:
        x, w, b, cfg, dt = conv
        if isinstance(x, fx.Node):
            return Rep("conv", x, (), Mat(w), b, conv=cfg, nlin=1, nops=1, dtype_src=dt)
    if "norm_affine" in rules:
        aff = norm_affine_of(n, gm)
        if aff is not None and isinstance(n.args[0], fx.Node):
            return Rep("linear", n.args[0], (("norm", n),), Mat(diag=aff[0]), aff[1], nops=1)
    return None


# ---- extensions -------------------------------------------------------------------------------------------------

def _sole(x: Any, n: fx.Node, reps: dict[fx.Node, Rep]) -> Rep | None:
    """The region ending at ``x`` when ``n`` is its only user."""
    if isinstance(x, fx.Node) and x in reps and len(x.users) == 1 and next(iter(x.users)) is n:
        r = reps[x]
        return None if r.squeeze is not None else r
    return None


def _feature_operand(value: Any, n: fx.Node, r: Rep) -> Vec | None:
    """A constant operand of an elementwise op, as a per-feature vector or a scalar; None if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Vec(repr(float(value)), True)
    if not isinstance(value, fx.Node) or not match.is_static(value):
        return None
    out = node_shape(n)
    vs = match.shape(value)
    code = match.static_code(value)
    if out is None or vs is None or code is None:
        return None
    if match.number(value) is not None:  # a Python number held by the module (self.alpha)
        return Vec(f"float({code})", True)
    axis = len(out) - 1 if r.family == "linear" else 1
    how = match.per_feature(vs, len(out), axis)
    if how is None:
        return None
    return Vec(f"({code}).reshape(())" if how == "scalar" else f"({code}).reshape(-1)", how == "scalar")


def _same_shape(a: Any, b: Any) -> bool:
    sa, sb = match.shape(a), match.shape(b)
    return sa is not None and sa == sb


def _extend_linear(n, gm, reps, rules) -> tuple[Rep, list] | None:
    lin = linear_parts(n, gm)
    if lin is not None:
        x, w, b, _ = lin
        r = _sole(x, n, reps)
        if r is None or r.family != "linear" or not ("chain" in rules or r.nlin == 0):
            return None
        return dataclasses.replace(r, a=compose(w, r.a), c=vadd(matvec(w, r.c), b), nlin=r.nlin + 1,
                                   nops=r.nops + 1, dtype_src=r.dtype_src or lin[3]), [x]
    conv = conv_parts(n, gm)
    if conv is not None and "chain" in rules:
        x, w, b, cfg, _ = conv
        r = _sole(x, n, reps)
        pointwise = all(s == 1 for s in cfg.stride) and not any(cfg.padding) and cfg.groups == 1
        if r is None or r.family != "conv" or r.conv.groups != 1 or not pointwise or r.conv.nd != cfg.nd:
            return None
        ws = None
        if match.module_of(n, gm) is not None:
            ws = tuple(match.module_of(n, gm).kernel_size)
        if ws is None or any(k != 1 for k in ws):
            return None
        w2 = f"({w}).flatten(1)"
        return dataclasses.replace(r, a=Mat(f"torch.tensordot({w2}, {r.a.dense}, dims=1)"),
                                   c=vadd(matvec(w2, r.c), b), nlin=r.nlin + 1, nops=r.nops + 1), [x]
    return None


def _extend_elementwise(n, gm, reps, rules, k, residual: bool) -> tuple[Rep, list] | None:
    args = list(n.args)
    if n.kwargs or not args:
        return None
    if k == "neg" and len(args) == 1 and not residual:
        r = _sole(args[0], n, reps)
        if r is None or "scale_bias" not in rules:
            return None
        return dataclasses.replace(r, a=mneg(r.a, r.spatial), c=vneg(r.c), nops=r.nops + 1), [args[0]]
    if len(args) != 2:
        return None
    a, b = args
    ra, rb = _sole(a, n, reps), _sole(b, n, reps)
    if residual and "residual" in rules and k in ("add", "sub") and _same_shape(a, b):
        if ra is not None and rb is not None and ra.family == rb.family == "linear" and ra.base is rb.base \
                and ra.base_ops == rb.base_ops:
            a2, c2 = (rb.a, rb.c) if k == "add" else (mneg(rb.a), vneg(rb.c))
            return dataclasses.replace(ra, a=madd(ra.a, a2), c=vadd(ra.c, c2), nlin=ra.nlin + rb.nlin,
                                       nops=ra.nops + rb.nops + 1, eval_only=ra.eval_only + rb.eval_only), [a, b]
        for r, other, first in ((ra, b, True), (rb, a, False)):
            if r is not None and r.family == "linear" and other is r.base and not r.base_ops \
                    and r.a.dense is not None:
                # add: region + base; sub: region - base (region first) or base - region
                negate_region = k == "sub" and not first
                ident = -1.0 if (k == "sub" and first) else 1.0
                a_new = mneg(r.a) if negate_region else r.a
                c_new = vneg(r.c) if negate_region else r.c
                return dataclasses.replace(r, a=Mat(f"_ks_add_diag({a_new.dense}, {ident})"), c=c_new,
                                           nops=r.nops + 1), [a if first else b]
    if residual or "scale_bias" not in rules:
        return None
    for r, other, first in ((ra, b, True), (rb, a, False)):
        if r is None:
            continue
        src = a if first else b
        if not _same_shape(src, n):
            continue
        v = _feature_operand(other, n, r)
        if v is None:
            continue
        if k == "mul":
            return dataclasses.replace(r, a=scale_rows(r.a, v, r.spatial), c=vmul(r.c, v) if r.c else None,
                                       nops=r.nops + 1), [src]
        if k == "div" and first:
            inv = Vec(f"(1.0 / ({v.code}))", v.scalar)
            return dataclasses.replace(r, a=scale_rows(r.a, inv, r.spatial), c=vmul(r.c, inv) if r.c else None,
                                       nops=r.nops + 1), [src]
        if k == "add":
            return dataclasses.replace(r, c=vadd(r.c, v), nops=r.nops + 1), [src]
        if k == "sub":
            if first:
                return dataclasses.replace(r, c=vadd(r.c, vneg(v)), nops=r.nops + 1), [src]
            return dataclasses.replace(r, a=mneg(r.a, r.spatial), c=vadd(vneg(r.c), v), nops=r.nops + 1), [src]
    return None


def _extend_bn(n, gm, reps, rules) -> tuple[Rep, list] | None:
    if "bn" not in rules:
        return None
    x = n.args[0] if n.args else None
    r = _sole(x, n, reps)
    xs = match.shape(x)
    if r is None or xs is None:
        return None
    if r.family == "linear" and len(xs) != 2:
        return None
    mod = match.module_of(n, gm)
    if mod is not None:
        if mod.training or not mod.track_running_stats or mod.running_mean is None:
            return None
        p = n.target
        rv, rm = f"_ks_get(self, {p + '.running_var'!r})", f"_ks_get(self, {p + '.running_mean'!r})"
        eps = f"{match.attr_code(p)}.eps"
        w = f"_ks_get(self, {p + '.weight'!r})" if mod.weight is not None else "1.0"
        b = f"_ks_get(self, {p + '.bias'!r})" if mod.bias is not None else None
        eval_only = (p,)
    else:
        rm_n, rv_n = match.arg(n, 1, "running_mean"), match.arg(n, 2, "running_var")
        w_n, b_n = match.arg(n, 3, "weight"), match.arg(n, 4, "bias")
        training, eps_v = match.arg(n, 5, "training", False), match.arg(n, 7, "eps", 1e-5)
        if training is not False or not isinstance(eps_v, float):
            return None
        codes = [match.static_code(v) if match.is_static(v) else None for v in (rm_n, rv_n, w_n, b_n)]
        if codes[0] is None or codes[1] is None or codes[0] == "None" or codes[2] is None or codes[3] is None:
            return None
        rm, rv, eps = codes[0], codes[1], repr(eps_v)
        w = "1.0" if codes[2] == "None" else codes[2]
        b = None if codes[3] == "None" else codes[3]
        eval_only = ()
    s = Vec(f"(({w}) / torch.sqrt({rv} + {eps}))", False)
    t = Vec(f"(-({rm}) * {s.code})" if b is None else f"(({b}) - ({rm}) * {s.code})", False)
    return dataclasses.replace(r, a=scale_rows(r.a, s, r.spatial), c=vadd(vmul(r.c, s) if r.c else None, t),
                               nops=r.nops + 1, eval_only=r.eval_only + eval_only), [x]


def _extend_reduce(n, gm, reps, rules, k) -> tuple[Rep, list] | None:
    x = n.args[0] if n.args else None
    r = _sole(x, n, reps)
    red = match.reduce_dims(n) if r is not None else None
    if r is None or red is None or r.a.dense is None:
        return None
    dims, keepdim = red
    rank = len(match.shape(x))
    axis = rank - 1 if r.family == "linear" else 1
    if dims == (axis,) and "reduce_features" in rules:
        if r.family == "conv" and r.conv.groups != 1:
            return None
        a = Mat(f"({r.a.dense}).{k}(0, keepdim=True)")
        if r.c is None:
            c = None
        elif k == "mean":
            c = Vec(f"({r.c.code}).reshape(1)" if r.c.scalar else f"({r.c.code}).mean().reshape(1)", False)
        else:
            c = Vec(f"_ks_vsum({r.c.code}, ({r.a.dense}).shape[0])" if r.c.scalar else
                    f"({r.c.code}).sum().reshape(1)", False)
        return dataclasses.replace(r, a=a, c=c, nops=r.nops + 1, squeeze=None if keepdim else axis), [x]
    if axis not in dims and r.family == "linear" and "reduce_commute" in rules:
        if k == "sum" and r.c is not None:
            return None
        return dataclasses.replace(r, base_ops=r.base_ops + (("reduce", k, dims, keepdim),), nops=r.nops + 1), [x]
    return None


def _extend_pool(n, gm, reps, rules) -> tuple[Rep, list] | None:
    if "pool" not in rules:
        return None
    x = n.args[0] if n.args else None
    r = _sole(x, n, reps)
    if r is None or r.family != "conv" or any(d != 1 for d in r.conv.dilation):
        return None
    nd = r.conv.nd
    mod = match.module_of(n, gm)
    if mod is not None:
        ks, st, pad = mod.kernel_size, mod.stride, mod.padding
        ceil, div = mod.ceil_mode, getattr(mod, "divisor_override", None)
    else:
        ks, st, pad = match.arg(n, 1, "kernel_size"), match.arg(n, 2, "stride"), match.arg(n, 3, "padding", 0)
        ceil, div = match.arg(n, 4, "ceil_mode", False), match.arg(n, 6, "divisor_override")
    ks = as_tuple(ks, nd)
    st = ks if st is None or st == [] or st == () else as_tuple(st, nd)
    pad = as_tuple(pad, nd)
    if ks is None or st is None or pad is None or any(pad) or ceil or div is not None:
        return None
    a = Mat(f"_ks_pool_kernel({r.a.dense}, {ks!r}, {r.conv.stride!r})")
    cfg = dataclasses.replace(r.conv, stride=tuple(s * p for s, p in zip(r.conv.stride, st)))
    return dataclasses.replace(r, a=a, conv=cfg, nops=r.nops + 1), [x]


def _extend(n: fx.Node, gm: fx.GraphModule, reps: dict, rules: frozenset[str]) -> tuple[Rep, list, str] | None:
    """(new region, the regions it consumed, the rule that applied) or None."""
    k = match.kind(n, gm)
    out, rule = None, ""
    if k in ("linear", "matmul", "conv"):
        out = _extend_linear(n, gm, reps, rules)
        rule = "chain" if out is None or out[0].nlin > 1 else "norm_affine"
    elif k in ("mul", "div", "add", "sub", "neg"):
        out, rule = _extend_elementwise(n, gm, reps, rules, k, residual=True), "residual"
        if out is None:
            out, rule = _extend_elementwise(n, gm, reps, rules, k, residual=False), "scale_bias"
    elif k == "batch_norm":
        out, rule = _extend_bn(n, gm, reps, rules), "bn"
    elif k in ("sum", "mean"):
        out = _extend_reduce(n, gm, reps, rules, k)
        rule = "reduce_commute" if out is not None and out[0].base_ops and out[0].base_ops[-1][0] == "reduce" \
            and out[0].base_ops != reps[out[1][0]].base_ops else "reduce_features"
    elif k == "avg_pool":
        out, rule = _extend_pool(n, gm, reps, rules), "pool"
    elif k == "identity" or (k == "dropout" and match.module_of(n, gm) is None
                             and match.arg(n, 2, "training", True) is False):
        r = _sole(n.args[0] if n.args else None, n, reps)
        out, rule = ((r, [n.args[0]]) if r is not None else None), ""
    if out is None:
        return None
    rep, consumed = out
    if rule:
        rep = dataclasses.replace(rep, used=rep.used | {rule})
    return rep, consumed, rule


def analyse(gm: fx.GraphModule, rules: frozenset[str],
            required: frozenset[str] | None = None) -> list[tuple[fx.Node, Rep]]:
    """The regions worth replacing, as (last node, region), in graph order; with ``required``, only regions that
    used at least one of those rules."""
    reps: dict[fx.Node, Rep] = {}
    consumed: set[fx.Node] = set()
    for n in gm.graph.nodes:
        if n.op in ("placeholder", "output", "get_attr"):
            continue
        try:
            ext = _extend(n, gm, reps, rules)
        except (AttributeError, TypeError, IndexError):  # odd argument forms: not a region
            ext = None
        if ext is not None:
            reps[n] = ext[0]
            consumed.update(ext[1])
            continue
        seed = _seed(n, gm, rules)
        if seed is not None:
            if seed.base_ops:
                seed = dataclasses.replace(seed, used=frozenset({"norm_affine"}))
            reps[n] = seed
    return [(n, r) for n, r in reps.items() if n not in consumed and r.worth()
            and (required is None or r.used & required)]


def _insert_base(graph: fx.Graph, gm: fx.GraphModule, r: Rep) -> fx.Node:
    x = r.base
    for op in r.base_ops:
        if op[0] == "norm":
            norm = op[1]
            mod = match.module_of(norm, gm)
            if mod is not None and isinstance(mod, nn.LayerNorm):
                shape = graph.get_attr(norm.target + ".normalized_shape")
                eps = graph.get_attr(norm.target + ".eps")
                x = graph.call_function(F.layer_norm, (x, shape, None, None, eps))
            elif mod is not None:
                shape = graph.get_attr(norm.target + ".normalized_shape")
                eps = graph.get_attr(norm.target + ".eps")
                x = graph.call_function(F.rms_norm, (x, shape, None, eps))
            else:
                args = list(norm.args) + [None] * (5 - len(norm.args))
                eps = match.arg(norm, 4, "eps", 1e-5)
                x = graph.call_function(F.layer_norm, (x, args[1], None, None, eps))
        else:
            _, k, dims, keepdim = op
            x = graph.call_method(k, (x, list(dims)), {"keepdim": keepdim})
    return x


def materialize(gm: fx.GraphModule, em: Emission, regions: list[tuple[fx.Node, Rep]]) -> None:
    """Replace each region by one Linear or convolution on derived weights."""
    graph = gm.graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # get_attr of derived buffers that the meta module does not hold
        for node, r in regions:
            w = em.fresh("w")
            em.derived[w] = r.a.dense
            em.dtype_of[w] = r.dtype_src or "next(self.parameters())"
            b = None
            if r.c is not None:
                b = em.fresh("b")
                em.derived[b] = f"_ks_vec({r.c.code}, self.{w}.shape[0], self.{w})"
                em.dtype_of[b] = f"self.{w}"
            for name in (w, b):
                if name:  # the traced module must hold every get_attr target for fx's lint
                    gm.register_buffer(name, torch.empty(0, device="meta"), persistent=False)
            for p in r.eval_only:
                if p not in em.eval_only:
                    em.eval_only.append(p)
            with graph.inserting_before(node):
                x = _insert_base(graph, gm, r)
                wn = graph.get_attr(w)
                bn = graph.get_attr(b) if b else None
                if r.family == "linear":
                    new = graph.call_function(F.linear, (x, wn, bn))
                else:
                    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[r.conv.nd]
                    c = r.conv
                    new = graph.call_function(fn, (x, wn, bn, c.stride, c.padding, c.dilation, c.groups))
                if r.squeeze is not None:
                    new = graph.call_method("squeeze", (new, r.squeeze))
            new.meta = dict(node.meta)
            node.replace_all_uses_with(new)
        graph.eliminate_dead_code()
    em.notes.append(f"{len(regions)} affine region(s) merged")
