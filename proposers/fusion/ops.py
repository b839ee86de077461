"""Elementwise operations of a traced graph and the Triton expression each becomes.

``elementwise(node, gm)`` names what a node computes (``("gelu", ())``, ``("clamp", (lo, hi))``, ``("add", ())``)
whatever spelling the reference used, or ``None``. ``triton_expr`` writes the operation on Triton values (float32
tiles), matching PyTorch's float32 definitions: exact ``erf`` GELU or its tanh form, softplus with threshold 20,
and so on.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from proposers.rewrites import match

_UNARY_FN: dict[Any, str] = {
    torch.relu: "relu", F.relu: "relu", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.tanh: "tanh",
    F.tanh: "tanh", F.gelu: "gelu", torch._C._nn.gelu: "gelu", F.silu: "silu", F.mish: "mish", torch.exp: "exp",
    torch.log: "log", torch.abs: "abs", torch.neg: "neg", operator.neg: "neg", torch.sqrt: "sqrt",
    torch.rsqrt: "rsqrt", F.leaky_relu: "leaky_relu", torch._C._nn.leaky_relu: "leaky_relu", F.hardtanh: "hardtanh",
    torch._C._nn.hardtanh: "hardtanh", F.hardswish: "hardswish", torch._C._nn.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid", torch._C._nn.hardsigmoid: "hardsigmoid", F.softplus: "softplus",
    torch._C._nn.softplus: "softplus", torch.clamp: "clamp", torch.clip: "clamp", F.relu6: "relu6",
    F.elu: "elu", torch.clamp_min: "clamp_min", torch.clamp_max: "clamp_max",
}
_UNARY_METHOD = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "exp": "exp", "log": "log", "abs": "abs",
                 "neg": "neg", "sqrt": "sqrt", "rsqrt": "rsqrt", "clamp": "clamp", "clip": "clamp",
                 "clamp_min": "clamp_min", "clamp_max": "clamp_max"}
_UNARY_MODULE: dict[type, str] = {
    nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.GELU: "gelu", nn.SiLU: "silu", nn.Mish: "mish",
    nn.LeakyReLU: "leaky_relu", nn.Hardtanh: "hardtanh", nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid",
    nn.Softplus: "softplus", nn.ReLU6: "relu6", nn.ELU: "elu", nn.Identity: "identity",
}
BINARY = ("add", "sub", "mul", "div", "maximum", "minimum", "pow")   # pow only with a literal exponent 2 or 3
_BINARY_FN = {torch.maximum: "maximum", torch.minimum: "minimum", torch.pow: "pow", operator.pow: "pow",
              torch.max: "maximum", torch.min: "minimum"}
_BINARY_METHOD = {"maximum": "maximum", "minimum": "minimum", "pow": "pow"}


def _num(v: Any) -> float | None:
    return None if v is None else match.number(v)


def elementwise(n: fx.Node, gm: fx.GraphModule) -> tuple[str, tuple] | None:
    """(operation, constant arguments) of an elementwise node, or None. Binary operations take their two
    operands from ``n.args[:2]``; unary ones from ``n.args[0]``."""
    if n.op == "call_module":
        mod = match.module_of(n, gm)
        op = _UNARY_MODULE.get(type(mod))
        if op is None or (op == "gelu" and mod.approximate not in ("none", "tanh")):
            return None
        if op == "gelu":
            return op, (mod.approximate,)
        if op == "leaky_relu":
            return op, (float(mod.negative_slope),)
        if op == "hardtanh":
            return op, (float(mod.min_val), float(mod.max_val))
        if op == "softplus":
            return op, (float(mod.beta), float(mod.threshold))
        if op == "elu":
            return op, (float(mod.alpha),)
        return op, ()
    k = match.kind(n, gm)
    if k in ("add", "sub", "mul", "div") and len(n.args) == 2:
        if k in ("add", "sub") and n.kwargs.get("alpha", 1) != 1:
            return None
        if k == "div" and n.kwargs.get("rounding_mode") is not None:
            return None
        if set(n.kwargs) - {"alpha", "rounding_mode"}:
            return None
        return k, ()
    if n.op == "call_function":
        try:
            op = _UNARY_FN.get(n.target) or _BINARY_FN.get(n.target)
        except TypeError:
            return None
    elif n.op == "call_method":
        op = _UNARY_METHOD.get(n.target) or _BINARY_METHOD.get(n.target)
    else:
        return None
    if op is None:
        return None
    if op in ("maximum", "minimum", "pow"):
        if len(n.args) != 2 or n.kwargs:
            return None
        return op, ()
    if op == "gelu":
        approx = n.kwargs.get("approximate", "none")
        return (op, (approx,)) if approx in ("none", "tanh") and len(n.args) == 1 else None
    if op == "leaky_relu":
        slope = _num(match.arg(n, 1, "negative_slope", 0.01))
        return (op, (slope,)) if slope is not None else None
    if op == "hardtanh":
        lo, hi = _num(match.arg(n, 1, "min_val", -1.0)), _num(match.arg(n, 2, "max_val", 1.0))
        return (op, (lo, hi)) if lo is not None and hi is not None else None
    if op == "softplus":
        beta, thr = _num(match.arg(n, 1, "beta", 1.0)), _num(match.arg(n, 2, "threshold", 20.0))
        return (op, (beta, thr)) if beta is not None and thr is not None else None
    if op == "elu":
        alpha = _num(match.arg(n, 1, "alpha", 1.0))
        return (op, (alpha,)) if alpha is not None and not match.arg(n, 2, "inplace", False) else None
    if op in ("clamp", "clamp_min", "clamp_max"):
        if op == "clamp":
            lo_a, hi_a = match.arg(n, 1, "min"), match.arg(n, 2, "max")
        elif op == "clamp_min":
            lo_a, hi_a = match.arg(n, 1, "min"), None
        else:
            lo_a, hi_a = None, match.arg(n, 1, "max")
        lo, hi = _num(lo_a), _num(hi_a)
        if (lo_a is not None and lo is None) or (hi_a is not None and hi is None):
            return None
        return "clamp", (lo, hi)
    extra = [a for a in list(n.args[1:]) + list(n.kwargs.values()) if a not in (False, None)]
    return (op, ()) if not extra else None


def _f(v: float) -> str:
    return repr(float(v))


def _sigmoid(x: str) -> str:
    return f"(1.0 / (1.0 + tl.exp(-({x}))))"


def _tanh(x: str) -> str:
    # tanh through the exponential of a non-positive argument (no overflow), sign restored
    return f"_ks_tanh({x})"


def unary_expr(op: str, extra: tuple, x: str) -> str:
    """Triton code for ``op`` applied to the value ``x`` (a float32 tile or scalar)."""
    if op == "identity":
        return x
    if op == "relu":
        return f"tl.maximum({x}, 0.0)"
    if op == "relu6":
        return f"tl.minimum(tl.maximum({x}, 0.0), 6.0)"
    if op == "sigmoid":
        return _sigmoid(x)
    if op == "tanh":
        return _tanh(x)
    if op == "gelu":
        if extra and extra[0] == "tanh":
            return f"(0.5 * {x} * (1.0 + {_tanh(f'0.7978845608028654 * ({x} + 0.044715 * {x} * {x} * {x})')}))"
        return f"(0.5 * {x} * (1.0 + tl.erf({x} * 0.7071067811865476)))"
    if op == "silu":
        return f"({x} * {_sigmoid(x)})"
    if op == "softplus":
        beta, thr = extra if extra else (1.0, 20.0)
        bx = f"({x} * {_f(beta)})"
        return f"tl.where({bx} > {_f(thr)}, {x}, _ks_log1p(tl.exp({bx})) / {_f(beta)})"
    if op == "mish":
        sp = f"tl.where({x} > 20.0, {x}, _ks_log1p(tl.exp({x})))"
        return f"({x} * {_tanh(sp)})"
    if op == "exp":
        return f"tl.exp({x})"
    if op == "log":
        return f"tl.log({x})"
    if op == "abs":
        return f"tl.abs({x})"
    if op == "neg":
        return f"(-{x})"
    if op == "sqrt":
        return f"tl.sqrt({x})"
    if op == "rsqrt":
        return f"(1.0 / tl.sqrt({x}))"
    if op == "leaky_relu":
        return f"tl.where({x} > 0.0, {x}, {x} * {_f(extra[0])})"
    if op == "elu":
        return f"tl.where({x} > 0.0, {x}, {_f(extra[0])} * (tl.exp({x}) - 1.0))"
    if op == "hardtanh":
        return f"tl.minimum(tl.maximum({x}, {_f(extra[0])}), {_f(extra[1])})"
    if op == "hardswish":
        return f"({x} * tl.minimum(tl.maximum({x} + 3.0, 0.0), 6.0) / 6.0)"
    if op == "hardsigmoid":
        return f"(tl.minimum(tl.maximum({x} + 3.0, 0.0), 6.0) / 6.0)"
    if op == "clamp":
        lo, hi = extra
        out = x
        if lo is not None:
            out = f"tl.maximum({out}, {_f(lo)})"
        if hi is not None:
            out = f"tl.minimum({out}, {_f(hi)})"
        return out
    raise ValueError(f"no Triton expression for {op!r}")


def binary_expr(op: str, a: str, b: str) -> str:
    if op == "add":
        return f"({a} + {b})"
    if op == "sub":
        return f"({a} - {b})"
    if op == "mul":
        return f"({a} * {b})"
    if op == "div":
        return f"({a} / {b})"
    if op == "maximum":
        return f"tl.maximum({a}, {b})"
    if op == "minimum":
        return f"tl.minimum({a}, {b})"
    raise ValueError(f"no Triton expression for {op!r}")


# Device helpers every generated kernel file carries.
HELPERS = '''
@triton.jit
def _ks_tanh(x):
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0.0, -t, t)


@triton.jit
def _ks_log1p(x):
    # log(1 + x) without the cancellation of 1 + x for small x
    u = 1.0 + x
    return tl.where(u == 1.0, x, tl.log(u) * (x / (u - 1.0)))
'''
