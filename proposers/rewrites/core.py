"""Applying named rewrites to a problem and rendering the result as a candidate source.

A graph rewrite is a module with ``NAME``, ``applies(gm) -> bool`` (does it change this traced graph?) and
``transform(ctx) -> bool`` (mutate the context's graph and emission; True if it changed anything); ``compile`` is
not a graph change but the compiler options ``generate`` sets. ``generate`` composes several in order and checks that
the candidate is the same at every scale of the problem, so that nothing traced at one size is baked into it.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import types
from collections.abc import Mapping, Sequence
from typing import Any

import torch.fx as fx

from proposers.rewrites.codegen import CodegenError, Emission, render, render_wrapper
from proposers.rewrites.problem import Problem, Traced, trace_problem

log = logging.getLogger(__name__)

# name -> module; imported only when used
REWRITES: dict[str, str] = {
    "linear_chain": "proposers.rewrites.linear_chain",
    "scale_bias_fold": "proposers.rewrites.scale_bias_fold",
    "bn_fold": "proposers.rewrites.bn_fold",
    "norm_affine_fold": "proposers.rewrites.norm_affine_fold",
    "residual_fold": "proposers.rewrites.residual_fold",
    "reduce_reassoc": "proposers.rewrites.reduce_reassoc",
    "conv_pool_fold": "proposers.rewrites.conv_pool_fold",
    "algebraic": "proposers.rewrites.algebraic",
    "parallel_linears": "proposers.rewrites.parallel_linears",
    "concat_linears": "proposers.rewrites.concat_linears",
    "sdpa": "proposers.rewrites.sdpa",
    "avgpool_conv": "proposers.rewrites.avgpool_conv",
    "channels_last": "proposers.rewrites.channels_last",
    "cpp_fusion": "proposers.rewrites.cpp_fusion",
    "reduce_identity": "proposers.rewrites.reduce_identity",
    "clone_elim": "proposers.rewrites.clone_elim",
    "pool_merge": "proposers.rewrites.pool_merge",
    "compile": "proposers.rewrites.compile",
}


class UnknownRewrite(ValueError):
    pass


def rewrite_module(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(REWRITES[name])
    except KeyError:
        raise UnknownRewrite(f"unknown rewrite {name!r}; valid: {', '.join(sorted(REWRITES))}") from None


@dataclasses.dataclass
class Context:
    """What a rewrite works on: a mutable copy of the traced graph and the emission it adds to."""

    traced: Traced
    gm: fx.GraphModule
    em: Emission
    params: Mapping[str, Any]


_SHAPE_KEEPING = {"layer_norm", "rms_norm", "batch_norm", "dropout", "identity"}


def hoist_shape_queries(gm: fx.GraphModule) -> None:
    """Read ``.shape``/``.size()``/``.dim()`` of a norm's output from its input (the same shape), so that the
    query is not a second use of the output that keeps the norm out of a merged region."""
    from proposers.rewrites import match
    for q in list(gm.graph.nodes):
        is_query = (q.op == "call_function" and q.target is getattr and len(q.args) == 2 and q.args[1] == "shape") \
            or (q.op == "call_method" and q.target in ("size", "dim"))
        if not is_query or not isinstance(q.args[0], fx.Node):
            continue
        src = q.args[0]
        while match.kind(src, gm) in _SHAPE_KEEPING and src.args and isinstance(src.args[0], fx.Node):
            src = src.args[0]
        if src is not q.args[0]:
            q.args = (src,) + tuple(q.args[1:])


def trace_all(problem: Problem) -> list[Traced] | None:
    """The problem traced at every scale, or None if any scale cannot be traced."""
    out = []
    for scale in problem.scales():
        t = trace_problem(problem, scale)
        if t is None:
            return None
        out.append(t)
    return out


def generate(problem: Problem, names: Sequence[str], params: Mapping[str, Any] | None = None,
             traces: Sequence[Traced] | None = None) -> str | None:
    """The candidate source after applying ``names`` in order, or None when they change nothing.

    ``params`` may hold ``compile`` (inductor options) and per-rewrite settings. A list that only compiles yields a
    wrapper around the reference forward and needs no trace.
    """
    out = generate_applied(problem, names, params, traces)
    return None if out is None else out[0]


def generate_applied(problem: Problem, names: Sequence[str], params: Mapping[str, Any] | None = None,
                     traces: Sequence[Traced] | None = None) -> tuple[str, list[str]] | None:
    """Like ``generate``, with the names that changed something (and ``compile``), in order."""
    params = dict(params or {})
    graph_names = [n for n in names if n != "compile"]
    compiled = "compile" in names
    if not graph_names:
        if not compiled:
            return None
        em = Emission(compile_options=dict(params.get("compile") or {}))
        return render_wrapper(problem, em, "compile"), ["compile"]
    if traces is None:
        traces = trace_all(problem)
    if not traces:
        return None
    results = set()
    for t in traces:
        ctx = Context(t, t.fresh_graph_module(), Emission(), params)
        hoist_shape_queries(ctx.gm)
        applied = []
        for name in graph_names:
            mod = rewrite_module(name)
            try:
                if mod.transform(ctx):
                    applied.append(name)
            except CodegenError as e:
                log.info("rewrite %s does not apply to %s: %s", name, problem.problem_id, e)
                return None
        if not applied:
            return None
        if compiled:
            ctx.em.compile_options = dict(params.get("compile") or {})
            applied.append("compile")
        try:
            ctx.gm.graph.lint()
            results.add((render(problem, ctx.gm, ctx.em, " + ".join(applied)), tuple(applied)))
        except (CodegenError, RuntimeError) as e:
            log.info("cannot render %s for %s: %s", "+".join(names), problem.problem_id, e)
            return None
    if len(results) != 1:
        log.info("%s differs between scales of %s; not proposed", "+".join(names), problem.problem_id)
        return None
    source, applied = results.pop()
    return source, list(applied)
