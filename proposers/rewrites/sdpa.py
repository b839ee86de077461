"""Hand-written attention replaced by ``F.scaled_dot_product_attention``.

Applies to ``matmul(softmax(mask(scale(q @ k^T)), dim=-1), v)`` where ``k^T`` is ``k.transpose(-2, -1)``, the
optional scale multiplies or divides by a constant number, the optional mask is ``masked_fill(~m, -inf)`` or
``masked_fill(m == 0, -inf)`` (``m`` becomes SDPA's boolean ``attn_mask``), an optional identity dropout
(``F.dropout(training=False)``, ``nn.Dropout(p=0)``) sits after the softmax, and every intermediate has no other
use. The reference's scale is passed explicitly unless it is SDPA's default ``1/sqrt(E)``.
"""
from __future__ import annotations

import math
import operator
import warnings
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from proposers.rewrites import match

NAME = "sdpa"


def _only_user(n: fx.Node) -> fx.Node | None:
    return next(iter(n.users)) if len(n.users) == 1 else None


def _is_kt(n: Any, gm) -> fx.Node | None:
    """``k`` when ``n`` is ``k.transpose(-2, -1)`` (either order of the two axes)."""
    if not isinstance(n, fx.Node) or match.kind(n, gm) != "transpose" or len(n.args) != 3:
        return None
    k, d0, d1 = n.args
    rank = len(match.shape(k) or ())
    if rank < 2 or not isinstance(d0, int) or not isinstance(d1, int):
        return None
    if {d0 % rank, d1 % rank} != {rank - 2, rank - 1}:
        return None
    return k


def _softmax_last(n: fx.Node, gm) -> bool:
    k = match.kind(n, gm)
    rank = len(match.shape(n) or ())
    if k != "softmax" or rank == 0:
        return False
    mod = match.module_of(n, gm)
    dim = mod.dim if mod is not None else match.arg(n, 1, "dim")
    if n.kwargs.get("dtype") is not None or (mod is None and len(n.args) > 2):
        return False
    return isinstance(dim, int) and dim % rank == rank - 1


def _identity_dropout(n: fx.Node, gm) -> bool:
    if match.kind(n, gm) != "dropout":
        return False
    mod = match.module_of(n, gm)
    if mod is not None:
        return isinstance(mod, nn.Dropout) and mod.p == 0.0
    return match.arg(n, 2, "training", True) is False


def _mask_of(n: fx.Node, gm) -> tuple[Any, str] | None:
    """(mask node, how) for ``masked_fill(cond, -inf)``; how: 'not' for ``~m``, 'eq0' for ``m == 0``."""
    if n.op != "call_method" or n.target != "masked_fill" or len(n.args) != 3:
        return None
    _, cond, value = n.args
    if not (isinstance(value, float) and value == -math.inf) or not isinstance(cond, fx.Node):
        return None
    if cond.op == "call_function" and cond.target in (operator.invert, torch.logical_not) and len(cond.args) == 1:
        return cond.args[0], "not"
    if cond.op == "call_method" and cond.target in ("logical_not", "bitwise_not") and len(cond.args) == 1:
        return cond.args[0], "not"
    if cond.op == "call_function" and cond.target in (operator.eq, torch.eq) and len(cond.args) == 2 \
            and cond.args[1] == 0:
        return cond.args[0], "eq0"
    return None


def _find(gm: fx.GraphModule) -> list[dict[str, Any]]:
    found = []
    for n in gm.graph.nodes:
        if match.kind(n, gm) != "matmul" or len(n.args) != 2 or n.kwargs:
            continue
        q, kt = n.args
        k = _is_kt(kt, gm)
        if k is None or len(kt.users) != 1:
            continue
        scale, cur = 1.0, n
        scale_node, scale_op = None, "mul"
        chain = [n]
        nxt = _only_user(cur)
        if nxt is not None and match.kind(nxt, gm) in ("mul", "div") and len(nxt.args) == 2 and not nxt.kwargs:
            a, b = nxt.args
            const = b if a is cur else a if match.kind(nxt, gm) == "mul" else None
            value = match.number(const) if match.is_static(const) else None
            if value:
                scale = value if match.kind(nxt, gm) == "mul" else 1.0 / value
                scale_node = const if isinstance(const, fx.Node) else None
                scale_op = match.kind(nxt, gm)
                cur = nxt
                chain.append(cur)
        mask = None
        nxt = _only_user(cur)
        if nxt is not None and _mask_of(nxt, gm) is not None and nxt.args[0] is cur:
            mask = _mask_of(nxt, gm)
            cur = nxt
            chain.append(cur)
        nxt = _only_user(cur)
        if nxt is None or not _softmax_last(nxt, gm) or nxt.args[0] is not cur:
            continue
        cur = nxt
        nxt = _only_user(cur)
        if nxt is not None and _identity_dropout(nxt, gm) and nxt.args[0] is cur:
            cur = nxt
            nxt = _only_user(cur)
        if nxt is None or match.kind(nxt, gm) != "matmul" or len(nxt.args) != 2 or nxt.args[0] is not cur:
            continue
        v = nxt.args[1]
        qs, ks, vs = match.shape(q), match.shape(k), match.shape(v)
        if not qs or not ks or not vs or len(qs) < 2 or qs[-1] != ks[-1] or ks[-2] != vs[-2]:
            continue
        found.append({"q": q, "k": k, "v": v, "scale": scale, "scale_node": scale_node, "scale_op": scale_op,
                      "mask": mask, "out": nxt})
    return found


def applies(gm: fx.GraphModule) -> bool:
    return bool(_find(gm))


def transform(ctx) -> bool:
    gm = ctx.gm
    found = _find(gm)
    if not found:
        return False
    graph = gm.graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in found:
            out = f["out"]
            with graph.inserting_before(out):
                kwargs: dict[str, Any] = {}
                head_dim = match.shape(f["q"])[-1]
                # SDPA's default scale is 1/sqrt(E): leave it implicit then, so that no size is baked into the source
                if not math.isclose(f["scale"], 1.0 / math.sqrt(head_dim), rel_tol=1e-9):
                    node = f["scale_node"]
                    if node is None:
                        kwargs["scale"] = f["scale"]
                    elif f["scale_op"] == "mul":
                        kwargs["scale"] = node
                    else:
                        kwargs["scale"] = graph.call_function(operator.truediv, (1.0, node))
                if f["mask"] is not None:
                    m, how = f["mask"]
                    kwargs["attn_mask"] = m if how == "not" else graph.call_method("ne", (m, 0))
                new = graph.call_function(F.scaled_dot_product_attention, (f["q"], f["k"], f["v"]), kwargs)
            new.meta = dict(out.meta)
            out.replace_all_uses_with(new)
        graph.eliminate_dead_code()
    ctx.em.notes.append(f"{len(found)} attention(s) replaced by SDPA")
    return True
