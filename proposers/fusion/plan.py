"""Planning fused kernels for a traced problem and writing the ``ModelNew`` that calls them.

``plan(traced)`` finds the segments: a matmul (``nn.Linear``, ``F.linear``, ``x @ W``) with the chain after it, and
chains after any other operation (a convolution keeps cuDNN; its epilogue becomes one kernel) or after an input.
``render(traced, segments, point)`` replaces each segment in a copy of the graph by a call of a generated launcher
and writes the candidate with the rewrites' code generator; the kernels, their launchers and the tuning point
(``SPACE``, ``POINT``) are module-level code of the candidate.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Any

import torch
import torch.fx as fx

from proposers.fusion import kernels, ops
from proposers.fusion.chain import EVAL_ONLY_MODULES, NORMALIZERS, REDUCTIONS, Chain, Operand, Step, find_chain
from proposers.rewrites import match
from proposers.rewrites.codegen import Emission, render as render_graph
from proposers.rewrites.problem import Traced, node_shape


class PlanError(ValueError):
    """A segment cannot be written for this point (the tuner prunes it)."""


@dataclasses.dataclass
class Segment:
    """One fused region: ``kind`` is ``gemm`` (a matmul and its chain) or ``chain`` (after any other value)."""

    kind: str
    chain: Chain
    a: fx.Node | None = None          # gemm: the left operand (M x K)
    b: Any = None                     # gemm: ("wt", node-or-attr) to transpose at the call, or ("b", node)


def _gemm(n: fx.Node, gm: fx.GraphModule) -> tuple[fx.Node, tuple, tuple | None] | None:
    """(a, b spec, bias spec) of a 2-D float32 matmul node, or None."""
    k = match.kind(n, gm)
    if k not in ("linear", "matmul") or not n.args or not isinstance(n.args[0], fx.Node):
        return None
    a = n.args[0]
    sa, so = node_shape(a), node_shape(n)
    if sa is None or so is None or len(sa) != 2 or len(so) != 2 or kernels_dtype(a) != torch.float32:
        return None
    if k == "linear":
        if n.op == "call_module":
            mod = match.module_of(n, gm)
            return a, ("wt", f"{n.target}.weight"), (None if mod.bias is None else ("attr", f"{n.target}.bias"))
        w, bias = match.arg(n, 1, "weight"), match.arg(n, 2, "bias")
        if not isinstance(w, fx.Node) or (bias is not None and not isinstance(bias, fx.Node)):
            return None
        return a, ("wt", w), (None if bias is None else ("node", bias))
    if n.kwargs or len(n.args) != 2 or not isinstance(n.args[1], fx.Node):
        return None
    sb = node_shape(n.args[1])
    if sb is None or len(sb) != 2 or kernels_dtype(n.args[1]) != torch.float32:
        return None
    return a, ("b", n.args[1]), None


def kernels_dtype(n: fx.Node) -> torch.dtype | None:
    return getattr(n.meta.get("tensor_meta"), "dtype", None)


def _with_bias(chain: Chain, bias: tuple | None) -> Chain:
    """The chain of a matmul whose product ``x0`` excludes the bias: a first step adds it."""
    if bias is None:
        return chain
    kind, ref = bias
    operands = list(chain.operands) + [Operand("chan", ref if kind == "node" else None, ref if kind == "attr" else None)]
    j = len(operands) - 1

    def fix(s: Step) -> Step:
        return dataclasses.replace(s, args=[("v", "xb") if a == ("v", "x0") else a for a in s.args])

    first = Step("xb", "add", (), [("v", "x0"), ("o", j)], chain.anchor)
    return dataclasses.replace(chain, pre=[first] + [fix(s) for s in chain.pre], post=[fix(s) for s in chain.post],
                               operands=operands)


def plan(traced: Traced) -> list[Segment]:
    """Non-overlapping segments of the traced graph, in graph order."""
    if not traced.shapes_known:
        return []
    gm = traced.gm
    used: set[fx.Node] = set()
    out: list[Segment] = []
    for n in gm.graph.nodes:
        if n in used or n.op in ("output", "get_attr") or node_shape(n) is None:
            continue
        g = _gemm(n, gm)
        if g is None and n.op != "placeholder" and ops.elementwise(n, gm) is not None:
            continue
        chain = find_chain(gm, n)
        if g is not None:
            if chain is None:
                chain = Chain(n, node_shape(n), [], None, [], [], n)
            a, b, bias = g
            seg = Segment("gemm", _with_bias(chain, bias), a, b)
        elif chain is not None and chain.ops_count() >= 2:
            seg = Segment("chain", chain)
        else:
            continue
        out.append(seg)
        used |= set(chain.nodes) | {n}
    return out


# ---- launchers -------------------------------------------------------------------------------------------------

def _operand_prep(chain: Chain) -> list[str]:
    lines = []
    for j, o in enumerate(chain.operands):
        if o.kind == "scalar":
            lines.append(f"o{j} = float(o{j})")
        elif o.kind == "chan":
            lines.append(f"o{j} = o{j}.reshape(-1).contiguous()")
        else:
            lines.append(f"o{j} = o{j}.contiguous()")
    return lines


def _op_args(chain: Chain) -> str:
    return "".join(f"o{j}, " for j in range(len(chain.operands)))


def _out_shape(chain: Chain) -> str:
    pv = chain.pivot
    if pv is None or pv.op in NORMALIZERS:
        return "x.shape"
    if pv.mode == "feat":
        return "(x.shape[0], 1, *x.shape[2:])" if pv.keepdim else "(x.shape[0], *x.shape[2:])"
    return "(x.shape[0], x.shape[1], *([1] * (x.dim() - 2)))" if pv.keepdim else "(x.shape[0], x.shape[1])"


def _finish_lines(chain: Chain, name: str, point: dict[str, Any], split: str) -> list[str]:
    """Launch the chain's flat or row kernel on ``x`` (``split`` partial sums ``x`` apart)."""
    pv = chain.pivot
    lines = ["A = x.shape[0]", "C = x.shape[1] if x.dim() > 1 else 1", "S = x.numel() // max(A * C, 1)",
             f"y = torch.empty({_out_shape(chain)}, device=x.device, dtype=torch.float32)"]
    if pv is None:
        blk = int(point["FLAT_BLOCK"])
        lines.append(f"{name}_flat[(triton.cdiv(A * C * S, {blk}),)](x, y, {_op_args(chain)}A * C * S, C, S, "
                     f"A * C * S, SPLIT={split}, BLOCK={blk}, num_warps={int(point['flat_warps'])})")
        return lines
    rows = {"feat": "A * S, C", "spatial": "A * C, S", "group": f"A * {pv.groups}, (C // {pv.groups}) * S"}[pv.mode]
    br, blk = int(point["ROW_R"]), int(point["ROW_BLOCK"])
    lines += [f"R, L = {rows}",
              f"{name}_row[(triton.cdiv(R, {br}),)](x, y, {_op_args(chain)}R, L, C, S, {pv.groups}, "
              f"A * C * S, SPLIT={split}, BLOCK_R={br}, BLOCK=min({blk}, max(16, triton.next_power_of_2(L))), "
              f"num_warps={int(point['row_warps'])})"]
    return lines


def _launcher(seg: Segment, name: str, point: dict[str, Any]) -> str:
    chain = seg.chain
    ind = "    "
    if seg.kind == "chain":
        body = ["x = x.contiguous()", *_operand_prep(chain), *_finish_lines(chain, name, point, "1"), "return y"]
        return f"def {name}(x, {_op_args(chain)}):\n" + "".join(ind + ln + "\n" for ln in body)
    bt = seg.b[0] == "wt"
    body = ["b = b.t()" if bt else "b = b", *_operand_prep(chain), "M, K = a.shape", "N = b.shape[1]"]
    red = chain.pivot.op if chain.pivot is not None else None
    if point["gemm"] == "torch":
        body += ["x = torch.mm(a, b)", *_finish_lines(chain, name, point, "1"), "return y"]
        return f"def {name}(a, b, {_op_args(chain)}):\n" + "".join(ind + ln + "\n" for ln in body)
    bm, bn, bk = int(point["BLOCK_M"]), int(point["BLOCK_N"]), int(point["BLOCK_K"])
    sk = int(point["SPLIT_K"])
    meta = (f"EPI={{epi}}, PREC={point['precision']!r}, EVEN_K=K % {bk} == 0, BLOCK_M={bm}, BLOCK_N={bn}, BLOCK_K={bk}, "
            f"GROUP_M={int(point['GROUP_M'])}, SPLIT_K={sk}, num_warps={int(point['num_warps'])}, "
            f"num_stages={int(point['num_stages'])}")
    grid = f"(triton.cdiv(M, {bm}) * triton.cdiv(N, {bn}), {sk})"
    call = f"{name}_gemm[{grid}](a, b, {{y}}, {{p}}, {{q}}, {{ops}}M, N, K, a.stride(0), a.stride(1), " \
           f"b.stride(0), b.stride(1), {meta})"
    opa = _op_args(chain)
    if sk == 1 and red not in NORMALIZERS:
        if red is None:
            body += ["y = torch.empty((M, N), device=a.device, dtype=torch.float32)",
                     call.format(y="y", p="y", q="y", epi="True", ops=opa), "return y"]
        else:
            fr = int(point["ROW_R"])
            body += [f"T = triton.cdiv(N, {bn})", "p = torch.empty((M, T), device=a.device, dtype=torch.float32)",
                     "q = torch.empty((M, T), device=a.device, dtype=torch.float32)" if red == "logsumexp" else "q = p",
                     "x = a.new_empty((M, N), device='meta')",
                     f"y = torch.empty({_out_shape(chain)}, device=a.device, dtype=torch.float32)",
                     call.format(y="p", p="p", q="q", epi="True", ops=opa),
                     f"{name}_fin[(triton.cdiv(M, {fr}),)](p, q, y, {_op_args(chain)}M, T, N, BLOCK_R={fr}, "
                     f"BLOCK=min(triton.next_power_of_2(T), 1024), num_warps={int(point['row_warps'])})",
                     "return y"]
        return f"def {name}(a, b, {_op_args(chain)}):\n" + "".join(ind + ln + "\n" for ln in body)
    body += [f"x = torch.empty(({sk}, M, N), device=a.device, dtype=torch.float32)",
             call.format(y="x", p="x", q="x", epi="False", ops=""), "x = x[0]",
             *_finish_lines(chain, name, point, str(sk)), "return y"]
    return f"def {name}(a, b, {_op_args(chain)}):\n" + "".join(ind + ln + "\n" for ln in body)


def _sources(seg: Segment, name: str, point: dict[str, Any]) -> list[str]:
    chain = seg.chain
    out = []
    needs_finish = not (seg.kind == "gemm" and point["gemm"] == "triton" and int(point["SPLIT_K"]) == 1
                        and (chain.pivot is None or chain.pivot.op in REDUCTIONS))
    if seg.kind == "gemm" and point["gemm"] == "triton":
        raw = dataclasses.replace(chain, pre=[], post=[], pivot=None, operands=[]) if not \
            (int(point["SPLIT_K"]) == 1 and (chain.pivot is None or chain.pivot.op in REDUCTIONS)) else chain
        out.append(kernels.gemm_kernel(raw, f"{name}_gemm"))
        if raw is chain and chain.pivot is not None:
            out.append(kernels.finish_kernel(_post_only(chain), f"{name}_fin"))
    if needs_finish:
        out.append(kernels.flat_kernel(chain, f"{name}_flat") if chain.pivot is None
                   else kernels.row_kernel(chain, f"{name}_row"))
    out.append(_launcher(seg, name, point))
    return out


def _post_only(chain: Chain) -> Chain:
    return dataclasses.replace(chain, pre=[])


# ---- graph surgery and the candidate ---------------------------------------------------------------------------

def _launcher_fn(name: str, module_name: str) -> types.FunctionType:
    """A function object that fx prints as a call of the candidate's module-level ``name``."""
    def fn(*args):
        raise RuntimeError("placeholder for generated code")
    fn.__name__ = fn.__qualname__ = name
    fn.__module__ = module_name
    return fn


def render(traced: Traced, segments: list[Segment], point: dict[str, Any], title: str,
           manifest: str = "") -> str:
    """The candidate source with every segment replaced by its fused kernels."""
    gm = traced.fresh_graph_module()
    old = list(traced.gm.graph.nodes)
    new_nodes = list(gm.graph.nodes)
    remap = dict(zip(old, new_nodes))
    graph = gm.graph
    em = Emission()
    em.prelude.append("import triton\nimport triton.language as tl\n" + manifest + ops.HELPERS)
    replaced: dict[fx.Node, fx.Node] = {}

    def live(n: fx.Node) -> fx.Node:
        n = remap[n]
        return replaced.get(n, n)

    for i, seg in enumerate(segments):
        name = f"_ks_seg{i}"
        em.prelude += _sources(seg, name, point)
        chain = seg.chain
        out = remap[chain.out]
        args: list[Any] = []
        with graph.inserting_before(out):
            if seg.kind == "gemm":
                args.append(live(seg.a))
                ref = seg.b[1]
                args.append(graph.get_attr(ref) if isinstance(ref, str) else live(ref))
            else:
                args.append(live(chain.anchor))
            for o in chain.operands:
                args.append(graph.get_attr(o.attr) if o.attr is not None else live(o.node))
            call = graph.create_node("call_function", _launcher_fn(name, traced.problem.module_name), tuple(args),
                                     {}, name=f"fused{i}")
        call.meta = dict(out.meta)
        out.replace_all_uses_with(call)
        replaced[out] = call
    em.eval_only = sorted({n.target for seg in segments for n in seg.chain.nodes if n.op == "call_module"
                           and isinstance(match.module_of(n, traced.gm), EVAL_ONLY_MODULES)})
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()
    src = render_graph(traced.problem, gm, em, title)
    # fx prints a module-level function qualified by its module's name: call the candidate's own definition
    for i in range(len(segments)):
        mangled = f"{traced.problem.module_name}__ks_seg{i}"
        src = src.replace(f"{mangled} = _ks_seg{i}\n", "").replace(f"{mangled}(", f"_ks_seg{i}(")
    return src
