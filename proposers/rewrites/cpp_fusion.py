"""A chain of elementwise operations fused into one generated C++/OpenMP kernel (CPU).

Applies when two or more elementwise operations follow one another, each intermediate result having no other use
and the shape staying that of the chain's input: unary activations (relu, sigmoid, tanh, exact gelu, silu, exp,
abs, neg, leaky_relu, clamp) and arithmetic with a number, a module scalar, or a constant that broadcasts per last
axis (``(C,)``) or per channel of a 4-D tensor (``(C, 1, 1)``). The chain becomes one pass over memory in a
vectorisable loop (``omp parallel for simd``), built with ``load_inline`` into ``params["build_dir"]`` (one build
directory per kernel source hash) or torch's default extension directory.
"""
from __future__ import annotations

import hashlib
import operator
import warnings
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from proposers.rewrites import match
from proposers.rewrites.problem import node_shape

NAME = "cpp_fusion"

_UNARY_FN = {torch.relu: "relu", F.relu: "relu", torch.sigmoid: "sigmoid", torch.tanh: "tanh", F.gelu: "gelu",
             torch._C._nn.gelu: "gelu", F.silu: "silu", torch.exp: "exp", torch.abs: "abs", torch.neg: "neg",
             operator.neg: "neg", F.leaky_relu: "leaky_relu", torch._C._nn.leaky_relu: "leaky_relu",
             torch.clamp: "clamp"}
_UNARY_METHOD = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "exp": "exp", "abs": "abs", "neg": "neg",
                 "clamp": "clamp"}
_UNARY_MODULE = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.GELU: "gelu", nn.SiLU: "silu",
                 nn.LeakyReLU: "leaky_relu"}
_C_UNARY = {
    "relu": "v = v > 0.f ? v : 0.f;",
    "sigmoid": "v = 1.f / (1.f + std::exp(-v));",
    "tanh": "v = std::tanh(v);",
    "gelu": "v = 0.5f * v * (1.f + std::erf(v * 0.70710678118654752f));",
    "silu": "v = v / (1.f + std::exp(-v));",
    "exp": "v = std::exp(v);",
    "abs": "v = std::fabs(v);",
    "neg": "v = -v;",
}
_C_BINARY = {"add": "v = v + {o};", "sub": "v = v - {o};", "rsub": "v = {o} - v;", "mul": "v = v * {o};",
             "div": "v = v / {o};", "rdiv": "v = {o} / v;"}


def _unary(n: fx.Node, gm) -> tuple[str, tuple] | None:
    """(op, extra constant args) of a unary elementwise node."""
    if n.op == "call_module":
        mod = match.module_of(n, gm)
        op = _UNARY_MODULE.get(type(mod))
        if op == "gelu" and mod.approximate != "none":
            return None
        if op == "leaky_relu":
            return op, (float(mod.negative_slope),)
        return (op, ()) if op else None
    if n.op == "call_function":
        try:
            op = _UNARY_FN.get(n.target)
        except TypeError:
            return None
    elif n.op == "call_method":
        op = _UNARY_METHOD.get(n.target)
    else:
        return None
    if op is None:
        return None
    if op == "gelu" and n.kwargs.get("approximate", "none") != "none":
        return None
    if op == "leaky_relu":
        slope = match.arg(n, 1, "negative_slope", 0.01)
        return (op, (float(slope),)) if isinstance(slope, (int, float)) else None
    if op == "clamp":
        lo, hi = match.arg(n, 1, "min"), match.arg(n, 2, "max")
        if not all(v is None or isinstance(v, (int, float)) for v in (lo, hi)):
            return None
        return op, (lo, hi)
    extra = [a for a in list(n.args[1:]) + list(n.kwargs.values()) if a not in (False, None)]
    return (op, ()) if not extra else None


def _operand(value: Any, x_shape: tuple[int, ...]) -> tuple[str, Any] | None:
    """("lit", float) | ("num", node) | ("last", node) | ("chan", node) for a constant operand."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return "lit", float(value)
    if not isinstance(value, fx.Node) or not match.is_static(value):
        return None
    if match.number(value) is not None:
        return "num", value
    s = node_shape(value)
    if s is None or match.static_code(value) is None:
        return None
    rank = len(x_shape)
    how_last = match.per_feature(s, rank, rank - 1)
    if how_last == "vector":
        return "last", value
    if rank == 4 and match.per_feature(s, rank, 1) == "vector":
        return "chan", value
    if how_last == "scalar":
        return "num_t", value
    return None


def _step(n: fx.Node, gm, prev: fx.Node, shape) -> tuple[str, Any] | None:
    """How ``n`` transforms its single input ``prev`` (one chain step), or None."""
    if node_shape(n) != shape:
        return None
    u = _unary(n, gm)
    if u is not None and n.args and n.args[0] is prev:
        return "unary", u
    k = match.kind(n, gm)
    if k in ("add", "sub", "mul", "div") and len(n.args) == 2 and not n.kwargs:
        a, b = n.args
        if a is prev and b is not prev:
            o = _operand(b, shape)
            return ("binary", (k, o)) if o else None
        if b is prev and a is not prev:
            o = _operand(a, shape)
            kk = {"sub": "rsub", "div": "rdiv"}.get(k, k)
            return ("binary", (kk, o)) if o else None
    return None


def _chains(gm: fx.GraphModule) -> list[tuple[fx.Node, list[tuple[fx.Node, tuple]]]]:
    chains, used = [], set()
    for start in gm.graph.nodes:
        shape = node_shape(start)
        if start in used or start.op in ("output",) or not shape or start.op == "get_attr":
            continue
        steps, cur = [], start
        while len(cur.users) == 1:
            nxt = next(iter(cur.users))
            st = _step(nxt, gm, cur, shape)
            if st is None:
                break
            steps.append((nxt, st))
            cur = nxt
        meta = start.meta.get("tensor_meta")
        if len(steps) >= 2 and meta is not None and meta.dtype == torch.float32:
            chains.append((start, steps))
            used.update(n for n, _ in steps)
    return chains


def applies(gm: fx.GraphModule) -> bool:
    return bool(_chains(gm))


def _kernel(steps: list[tuple[fx.Node, tuple]]) -> tuple[str, list[tuple[str, Any]]]:
    """The C++ loop body and the tensor/number arguments it reads, in order."""
    lines, args = [], []
    for _, (kind, spec) in steps:
        if kind == "unary":
            op, extra = spec
            if op == "leaky_relu":
                lines.append(f"v = v > 0.f ? v : v * {extra[0]!r}f;")
            elif op == "clamp":
                lo, hi = extra
                if lo is not None:
                    lines.append(f"v = v < {float(lo)!r}f ? {float(lo)!r}f : v;")
                if hi is not None:
                    lines.append(f"v = v > {float(hi)!r}f ? {float(hi)!r}f : v;")
            else:
                lines.append(_C_UNARY[op])
        else:
            op, (how, value) = spec
            if how == "lit":
                o = f"{value!r}f"
            else:
                i = len(args)
                args.append((how, value))
                o = {"num": f"a{i}", "num_t": f"p{i}[0]", "last": f"p{i}[j % n_last]",
                     "chan": f"p{i}[(j / inner) % chans]"}[how]
            lines.append(_C_BINARY[op].format(o=o))
    return "\n            ".join(lines), args


def _cpp(body: str, args: list[tuple[str, Any]], fn: str) -> str:
    params = ["torch::Tensor x"]
    setup = []
    for i, (how, _) in enumerate(args):
        if how == "num":
            params.append(f"double a{i}_d")
            setup.append(f"const float a{i} = (float)a{i}_d;")
        else:
            params.append(f"torch::Tensor t{i}")
            setup.append(f"auto c{i} = t{i}.contiguous(); const float* p{i} = c{i}.data_ptr<float>();")
    setup_src = "\n    ".join(setup)
    return f"""
#include <torch/extension.h>
#include <cmath>

torch::Tensor {fn}({", ".join(params)}) {{
    TORCH_CHECK(x.scalar_type() == torch::kFloat32 && x.device().is_cpu());
    auto xc = x.contiguous();
    auto y = torch::empty_like(xc);
    const float* xp = xc.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    const int64_t total = xc.numel();
    const int64_t n_last = xc.dim() ? xc.size(-1) : 1;
    const int64_t chans = xc.dim() == 4 ? xc.size(1) : 1;
    const int64_t inner = xc.dim() == 4 ? xc.size(2) * xc.size(3) : 1;
    (void)n_last; (void)chans; (void)inner;
    {setup_src}
    #pragma omp parallel for simd schedule(static)
    for (int64_t j = 0; j < total; ++j) {{
        float v = xp[j];
            {body}
        yp[j] = v;
    }}
    return y;
}}
"""


def transform(ctx) -> bool:
    gm, em = ctx.gm, ctx.em
    chains = _chains(gm)
    if not chains:
        return False
    build_dir = ctx.params.get("build_dir")
    graph = gm.graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start, steps in chains:
            body, args = _kernel(steps)
            src = _cpp(body, args, "fused")
            digest = hashlib.sha256(src.encode()).hexdigest()[:16]
            mod_name = f"_ks_ext_{digest}"
            if not any(mod_name in p for p in em.prelude):
                path = (f"_ks_os.path.join({build_dir!r}, 'ks_{digest}')" if build_dir else "None")
                em.prelude.append(
                    f"_KS_CPP_{digest} = r'''{src}'''\n\n\n"
                    f"def {mod_name}():\n"
                    f"    path = {path}\n"
                    + ("    _ks_os.makedirs(path, exist_ok=True)\n" if build_dir else "")
                    + f"    return _ks_load_inline(name='ks_{digest}', cpp_sources=[_KS_CPP_{digest}], "
                      "functions=['fused'], build_directory=path,\n"
                      "                           extra_cflags=['-O3', '-march=native', '-fopenmp', "
                      "'-fno-math-errno'], extra_ldflags=['-fopenmp'], verbose=False)")
                attr = f"_ks_k_{digest}"
                em.init_lines.append(f"self.{attr} = {mod_name}()")
                setattr(gm, attr, torch.nn.Module())
            attr = f"_ks_k_{digest}"
            last = steps[-1][0]
            with graph.inserting_before(last):
                ext = graph.get_attr(attr)
                call_args = [start] + [v for _, v in args]
                fn = graph.call_method("fused", (ext,) + tuple(call_args))
            fn.meta = dict(last.meta)
            last.replace_all_uses_with(fn)
        graph.eliminate_dead_code()
    if not any("_ks_load_inline" in p and "import" in p for p in em.prelude):
        em.prelude.insert(0, "import os as _ks_os\nfrom torch.utils.cpp_extension import load_inline as _ks_load_inline")
    em.notes.append(f"{len(chains)} elementwise chain(s) fused in C++")
    return True
