"""Recognising operations in a traced graph, whatever spelling the reference used.

``kind(node)`` maps ``x * y``, ``torch.mul(x, y)`` and ``x.mul(y)`` to ``"mul"``, an ``nn.Linear`` call and
``F.linear`` to ``"linear"``, and so on. ``static_code`` renders a subgraph that depends only on the model's
parameters and constants as derivation code (float64) that runs inside the candidate's ``_ks_derive``.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from proposers.rewrites.problem import node_shape

_FUNCTIONS: dict[Any, str] = {
    operator.mul: "mul", torch.mul: "mul",
    operator.add: "add", torch.add: "add",
    operator.sub: "sub", torch.sub: "sub",
    operator.truediv: "div", torch.div: "div", torch.true_divide: "div",
    operator.neg: "neg", torch.neg: "neg",
    operator.matmul: "matmul", torch.matmul: "matmul", torch.mm: "matmul", torch.bmm: "bmm",
    torch.sum: "sum", torch.mean: "mean",
    F.linear: "linear", torch._C._nn.linear: "linear",
    F.conv1d: "conv", F.conv2d: "conv", F.conv3d: "conv", torch.conv1d: "conv", torch.conv2d: "conv",
    torch.conv3d: "conv",
    F.layer_norm: "layer_norm", torch.layer_norm: "layer_norm",
    F.batch_norm: "batch_norm", torch.batch_norm: "batch_norm",
    F.avg_pool1d: "avg_pool", F.avg_pool2d: "avg_pool", F.avg_pool3d: "avg_pool",
    torch._C._nn.avg_pool2d: "avg_pool", torch._C._nn.avg_pool3d: "avg_pool", torch.avg_pool1d: "avg_pool",
    torch.softmax: "softmax", F.softmax: "softmax", torch._C._nn.scaled_dot_product_attention: "sdpa",
    F.dropout: "dropout", torch.dropout: "dropout",
    torch.transpose: "transpose",
}
_METHODS = {
    "mul": "mul", "add": "add", "sub": "sub", "div": "div", "neg": "neg", "matmul": "matmul", "mm": "matmul",
    "bmm": "bmm", "sum": "sum", "mean": "mean", "softmax": "softmax", "transpose": "transpose",
}
_MODULES: list[tuple[type, str]] = [
    (nn.Linear, "linear"), (nn.Conv1d, "conv"), (nn.Conv2d, "conv"), (nn.Conv3d, "conv"),
    (nn.LayerNorm, "layer_norm"), (nn.BatchNorm1d, "batch_norm"), (nn.BatchNorm2d, "batch_norm"),
    (nn.BatchNorm3d, "batch_norm"), (nn.AvgPool1d, "avg_pool"), (nn.AvgPool2d, "avg_pool"),
    (nn.AvgPool3d, "avg_pool"), (nn.Softmax, "softmax"), (nn.Dropout, "dropout"), (nn.Identity, "identity"),
]
if hasattr(nn, "RMSNorm"):
    _MODULES.append((nn.RMSNorm, "rms_norm"))
    _FUNCTIONS[F.rms_norm] = "rms_norm"


def module_of(node: fx.Node, gm: fx.GraphModule) -> nn.Module | None:
    if node.op != "call_module":
        return None
    try:
        return gm.get_submodule(node.target)
    except AttributeError:
        return None


def kind(node: fx.Node, gm: fx.GraphModule) -> str | None:
    """The normalised name of what ``node`` computes, or ``None`` when it is none of the known operations."""
    if node.op == "call_function":
        try:
            return _FUNCTIONS.get(node.target)
        except TypeError:  # unhashable target
            return None
    if node.op == "call_method":
        return _METHODS.get(node.target)
    if node.op == "call_module":
        mod = module_of(node, gm)
        for cls, name in _MODULES:
            if type(mod) is cls:
                return name
    return None


def arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    """Argument ``index`` (positional) or ``name`` (keyword) of a call node."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def attr_code(path: str) -> str:
    """Code reading attribute ``path`` of the candidate module (``self``), as stored (no cast)."""
    owner, _, leaf = path.rpartition(".")
    return f"self.get_submodule({owner!r}).{leaf}" if owner else f"self.{leaf}"


def is_static(node: Any) -> bool:
    """Whether a value depends on parameters and constants only (no input flows into it)."""
    if not isinstance(node, fx.Node):
        return True
    if node.op == "get_attr":
        return True
    if node.op == "placeholder" or node.op == "call_module":
        return False
    return all(is_static(a) for a in node.all_input_nodes)


_INFIX = {operator.mul: "*", operator.add: "+", operator.sub: "-", operator.truediv: "/", operator.pow: "**",
          operator.matmul: "@"}


def static_code(value: Any) -> str | None:
    """Derivation code (float64) for a static value, or ``None`` when it cannot be rendered."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) else repr(value)
    if isinstance(value, (tuple, list)):
        parts = [static_code(v) for v in value]
        if any(p is None for p in parts):
            return None
        return "(" + "".join(p + ", " for p in parts) + ")"
    if not isinstance(value, fx.Node):
        return None
    n = value
    if n.op == "get_attr":
        return f"_ks_get(self, {n.target!r})"
    if n.op == "call_function" and n.target is getattr and len(n.args) == 2 and n.args[1] in ("T", "mT"):
        inner = static_code(n.args[0])    # a transposed parameter: W.T
        return None if inner is None else f"({inner}).{n.args[1]}"
    args = [static_code(a) for a in n.args]
    kwargs = {k: static_code(v) for k, v in n.kwargs.items()}
    if any(a is None for a in args) or any(v is None for v in kwargs.values()):
        return None
    call_args = ", ".join(args + [f"{k}={v}" for k, v in kwargs.items()])
    if n.op == "call_method":
        return f"({args[0]}).{n.target}({', '.join(args[1:] + [f'{k}={v}' for k, v in kwargs.items()])})"
    if n.op == "call_function":
        if n.target in _INFIX and len(args) == 2 and not kwargs:
            return f"({args[0]} {_INFIX[n.target]} {args[1]})"
        if n.target is operator.neg:
            return f"(-{args[0]})"
        if n.target is operator.getitem:
            return f"({args[0]})[{args[1]}]"
        name = getattr(n.target, "__name__", None)
        if name and getattr(torch, name, None) is n.target:
            return f"torch.{name}({call_args})"
        if name and getattr(F, name, None) is n.target:
            return f"torch.nn.functional.{name}({call_args})"
    return None


def shape(value: Any) -> tuple[int, ...] | None:
    """The shape of a node's value from shape propagation; ``()`` for Python numbers."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ()
    if isinstance(value, fx.Node):
        if type(value.meta.get("value")) in (int, float):
            return ()
        return node_shape(value)
    return None


def number(value: Any) -> float | None:
    """The value of a Python number, or of a node known to hold one (a proxied size or scale)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, fx.Node) and type(value.meta.get("value")) in (int, float):
        return float(value.meta["value"])
    return None


def per_feature(operand_shape: tuple[int, ...], out_rank: int, axis: int) -> str | None:
    """How an operand broadcasts against a rank-``out_rank`` tensor along feature ``axis``.

    ``"scalar"``: the same value for every element; ``"vector"``: one value per feature; ``None``: anything else
    (the operation is then not a per-feature affine map and the rewrite stops there).
    """
    if len(operand_shape) > out_rank:
        return None
    pos = axis - (out_rank - len(operand_shape))
    others = [s for i, s in enumerate(operand_shape) if i != pos]
    if any(s != 1 for s in others):
        return None
    if pos < 0 or operand_shape[pos] == 1:
        return "scalar"
    return "vector"


def reduce_dims(node: fx.Node) -> tuple[tuple[int, ...], bool] | None:
    """The dimensions (normalised to be non-negative) and keepdim of a sum/mean node, or ``None``."""
    src = node.args[0] if node.args else None
    if not isinstance(src, fx.Node):
        return None
    s = node_shape(src)
    if s is None:
        return None
    dim = arg(node, 1, "dim")
    keepdim = arg(node, 2, "keepdim", False)
    if node.kwargs.get("dtype") is not None or dim is None or not isinstance(keepdim, bool):
        return None
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    if not all(isinstance(d, int) for d in dims):
        return None
    rank = len(s)
    return tuple(sorted(d % rank for d in dims)), keepdim


_VIEW_METHODS = {"detach", "view", "reshape", "squeeze", "unsqueeze", "transpose", "permute", "expand", "flatten",
                 "contiguous", "t", "view_as", "reshape_as", "expand_as", "unflatten", "narrow", "select"}
_VIEW_FUNCTIONS = {operator.getitem, torch.squeeze, torch.unsqueeze, torch.flatten, torch.reshape, torch.transpose,
                   torch.permute, torch.t, torch.narrow, torch.select, torch.detach}


_INPLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv, operator.ipow,
                      operator.imatmul, operator.imod, operator.iand, operator.ior, operator.ixor, operator.ilshift,
                      operator.irshift, operator.setitem}


def mutates_in_place(gm: fx.GraphModule) -> bool:
    """Whether anything in the graph may write to a tensor in place: an ``op_`` method or function, an
    ``inplace=True`` argument or module, or an opaque (non-torch.nn) module whose forward is not in the graph."""
    for n in gm.graph.nodes:
        if n.kwargs.get("inplace") is True:
            return True
        if n.op == "call_method" and n.target.endswith("_") and not n.target.endswith("__"):
            return True
        if n.op == "call_function":
            name = getattr(n.target, "__name__", "")
            if name.endswith("_") and not name.endswith("__") or n.target in _INPLACE_OPERATORS:
                return True
        if n.op == "call_module":
            mod = module_of(n, gm)
            if mod is None or getattr(mod, "inplace", False) or not type(mod).__module__.startswith("torch.nn"):
                return True
    return False


def is_view(n: fx.Node) -> bool:
    """Whether ``n`` may return a view of its first argument (sharing its storage)."""
    if n.op == "call_method":
        return n.target in _VIEW_METHODS
    if n.op == "call_function":
        try:
            return n.target in _VIEW_FUNCTIONS
        except TypeError:
            return False
    return False


def reaches_output_as_view(n: fx.Node) -> bool:
    """Whether ``n`` itself, or a view of it, is returned by the graph."""
    for u in n.users:
        if u.op == "output":
            return True
        if is_view(u) and u.args and u.args[0] is n and reaches_output_as_view(u):
            return True
    return False
