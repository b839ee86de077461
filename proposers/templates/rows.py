"""Recognising row-wise problems (softmax, log-softmax, LayerNorm, RMSNorm over the last axis) in a traced graph."""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from proposers.rewrites import match
from proposers.rewrites.problem import Traced, node_shape

OPS = ("softmax", "log_softmax", "layer_norm", "rms_norm")


def _compute_nodes(gm: fx.GraphModule) -> list[fx.Node]:
    return [n for n in gm.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]


def _last_dim(n: fx.Node, dim: Any) -> bool:
    rank = len(node_shape(n) or ())
    return isinstance(dim, int) and rank > 0 and dim % rank == rank - 1


def bind(traced: Traced) -> dict[str, Any] | None:
    """``{"op": ..., ...}`` when the whole model is one row-wise op over the last axis of its only input."""
    gm = traced.gm
    if not traced.shapes_known:
        return None
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    nodes = _compute_nodes(gm)
    if len(placeholders) != 1 or not nodes:
        return None
    x = placeholders[0]
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    if len(nodes) == 1 and nodes[0] is out and out.args and out.args[0] is x:
        n = out
        fn = n.target if n.op == "call_function" else n.target if n.op == "call_method" else None
        dim = match.arg(n, 1, "dim")
        if n.kwargs.get("dtype") is None:
            if fn in (torch.softmax, torch.nn.functional.softmax, "softmax") and _last_dim(n, dim):
                return {"op": "softmax"}
            if fn in (torch.log_softmax, torch.nn.functional.log_softmax, "log_softmax") and _last_dim(n, dim):
                return {"op": "log_softmax"}
        mod = match.module_of(n, gm)
        if isinstance(mod, nn.LayerNorm) and len(mod.normalized_shape) == 1 and mod.weight is not None \
                and mod.bias is not None:
            return {"op": "layer_norm", "module": n.target}
        return None
    # hand-written RMSNorm: x * rsqrt(mean(x^2, -1, keepdim) + eps) * w
    kinds = [(n.op, n.target if n.op != "call_module" else "module") for n in nodes]
    wanted = {("call_method", "pow"), ("call_method", "mean"), ("call_function", operator.add),
              ("call_function", torch.rsqrt), ("call_function", operator.mul)}
    if set(kinds) <= wanted | {("call_method", "rsqrt")} and len(nodes) == 6:
        add = next(n for n in nodes if n.target is operator.add)
        eps_arg = add.args[1]
        eps = match.number(eps_arg)
        weights = [a for n in nodes if n.target is operator.mul for a in n.args
                   if isinstance(a, fx.Node) and a.op == "get_attr" and match.number(a) is None]
        if eps is None or len(weights) != 1:
            return None
        eps_code = f"self.{eps_arg.target}" if isinstance(eps_arg, fx.Node) and eps_arg.op == "get_attr" else repr(eps)
        return {"op": "rms_norm", "weight": weights[0].target, "eps": eps_code}
    return None
