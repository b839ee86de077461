"""Finding fusable chains in a traced graph: an anchor, the elementwise steps after it, at most one row operation
(a reduction, softmax, log-softmax, or a layer/group norm) and the elementwise steps after that.

A chain's values live in registers of one kernel; what it reads from memory besides the anchor's output are its
operands: literal numbers, module scalars (a float argument), one-element tensors, per-channel vectors (dimension 1,
the feature of a 2-D tensor), and tensors of the chain's full shape (a residual input). The tensor is seen as
``(A, C, S)``: its first dimension, dimension 1 and the product of the rest. A row operation works along ``C``
(``mode="feat"``: softmax over dim 1, a 2-D row reduction, a LayerNorm over the features), along ``S``
(``mode="spatial"``: a global pooling), or over groups of channels (``mode="group"``: GroupNorm).
"""
from __future__ import annotations

import dataclasses
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from proposers.fusion import ops
from proposers.rewrites import match
from proposers.rewrites.problem import node_shape

REDUCTIONS = ("sum", "mean", "amax", "amin", "logsumexp")
EVAL_ONLY_MODULES = (nn.Dropout, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
NORMALIZERS = ("softmax", "log_softmax", "layer_norm", "group_norm")


@dataclasses.dataclass
class Operand:
    """Something a chain reads besides its own values. ``kind``: scalar | scalar_t | chan | full.

    ``node`` is the graph value read, or ``attr`` a module attribute path (a norm's weight) read at the call.
    """

    kind: str
    node: fx.Node | None = None
    attr: str | None = None


@dataclasses.dataclass
class Step:
    """``<name> = op(args)``: ``args`` are ("v", name) chain values, ("o", j) operands or ("lit", x) numbers.

    ``batch_norm`` (a BatchNorm module in eval mode: running statistics and affine per channel) and ``identity`` for
    a Dropout module hold only in eval mode; ``EVAL_ONLY`` names them."""

    name: str
    op: str
    extra: tuple
    args: list[tuple[str, Any]]
    node: fx.Node


@dataclasses.dataclass
class Pivot:
    """The row operation: ``op`` in REDUCTIONS + NORMALIZERS; ``mode`` feat | spatial | group. Its value is
    ``pv`` (per row for a reduction, per element for a normaliser)."""

    op: str
    mode: str
    keepdim: bool = True
    groups: int = 1
    eps: float = 0.0
    weight: int | None = None     # operand index of a per-channel affine weight
    bias: int | None = None
    node: fx.Node | None = None   # the node whose value is the pivot's result
    nodes: tuple = ()             # every node it replaces


@dataclasses.dataclass
class Chain:
    anchor: fx.Node
    shape: tuple[int, ...]
    pre: list[Step]
    pivot: Pivot | None
    post: list[Step]
    operands: list[Operand]
    out: fx.Node

    @property
    def nodes(self) -> list[fx.Node]:
        return [s.node for s in self.pre] + (list(self.pivot.nodes) if self.pivot else []) + \
            [s.node for s in self.post]

    @property
    def result(self) -> str:
        """The name of the chain's output value in generated code."""
        if self.post:
            return self.post[-1].name
        if self.pivot:
            return "pv"
        return self.pre[-1].name if self.pre else "x0"

    def ops_count(self) -> int:
        return len(self.pre) + len(self.post) + (1 if self.pivot else 0)


def _dtype(n: fx.Node) -> torch.dtype | None:
    tm = n.meta.get("tensor_meta")
    return getattr(tm, "dtype", None)


def _dims(n: fx.Node, index: int, name: str, rank: int) -> tuple[int, ...] | None:
    d = match.arg(n, index, name)
    if d is None:
        return None
    ds = d if isinstance(d, (tuple, list)) else (d,)
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in ds):
        return None
    return tuple(sorted(x % rank for x in ds))


def _mode(dims: tuple[int, ...], rank: int) -> str | None:
    if dims == (1,) and rank >= 2:
        return "feat"
    if rank >= 3 and dims == tuple(range(2, rank)):
        return "spatial"
    return None


def pivot_of(n: fx.Node, gm: fx.GraphModule, src: fx.Node, shape: tuple[int, ...]) -> Pivot | None:
    """The row operation ``n`` performs on ``src`` (of ``shape``), or None."""
    rank = len(shape)
    if not n.args or n.args[0] is not src:
        return None
    k = match.kind(n, gm)
    target = n.target
    if n.op == "call_module":
        mod = match.module_of(n, gm)
        if isinstance(mod, nn.Softmax) and mod.dim is not None and _mode(((mod.dim % rank),), rank) == "feat":
            return Pivot("softmax", "feat", node=n)
        if isinstance(mod, nn.LogSoftmax) and mod.dim is not None and _mode(((mod.dim % rank),), rank) == "feat":
            return Pivot("log_softmax", "feat", node=n)
        if isinstance(mod, nn.LayerNorm) and rank == 2 and tuple(mod.normalized_shape) == (shape[1],):
            return Pivot("layer_norm", "feat", eps=float(mod.eps), node=n)
        if isinstance(mod, nn.GroupNorm) and rank >= 2 and shape[1] == mod.num_channels:
            return Pivot("group_norm", "group", groups=int(mod.num_groups), eps=float(mod.eps), node=n)
        if isinstance(mod, (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)) and rank >= 3 \
                and not mod.track_running_stats and shape[1] == mod.num_features:
            # a GroupNorm with one channel a group
            return Pivot("group_norm", "group", groups=int(mod.num_features), eps=float(mod.eps), node=n)
        return None
    if k == "softmax" or (n.op in ("call_function", "call_method") and target in (
            torch.log_softmax, F.log_softmax, "log_softmax")):
        if n.kwargs.get("dtype") is not None:
            return None
        dims = _dims(n, 1, "dim", rank)
        if dims is None or _mode(dims, rank) != "feat":
            return None
        return Pivot("softmax" if k == "softmax" else "log_softmax", "feat", node=n)
    red = None
    if k in ("sum", "mean"):
        red = k
    elif n.op == "call_function" and target in (torch.amax, torch.amin, torch.logsumexp):
        red = {torch.amax: "amax", torch.amin: "amin", torch.logsumexp: "logsumexp"}[target]
    elif n.op == "call_method" and target in ("amax", "amin", "logsumexp"):
        red = target
    elif (n.op == "call_function" and target in (torch.max, torch.min)) or \
            (n.op == "call_method" and target in ("max", "min")):
        # torch.max(x, dim) returns (values, indices): only a sole use of values fuses
        users = list(n.users)
        if len(users) != 1 or not (users[0].op == "call_function" and (
                (users[0].target is operator.getitem and users[0].args[1] == 0)
                or (users[0].target is getattr and users[0].args[1] == "values"))):
            return None
        dim = match.arg(n, 1, "dim")
        if not isinstance(dim, int) or isinstance(dim, bool):
            return None
        keep = match.arg(n, 2, "keepdim", False)
        name = "amax" if target in (torch.max, "max") else "amin"
        mode = _mode((dim % rank,), rank)
        return Pivot(name, mode, keepdim=bool(keep), node=users[0]) if mode and isinstance(keep, bool) else None
    if red is None:
        return None
    if n.kwargs.get("dtype") is not None:
        return None
    dims = _dims(n, 1, "dim", rank)
    keep = match.arg(n, 2, "keepdim", False)
    if dims is None or not isinstance(keep, bool):
        return None
    mode = _mode(dims, rank)
    return Pivot(red, mode, keepdim=keep, node=n) if mode else None


class _Builder:
    def __init__(self, gm: fx.GraphModule, anchor: fx.Node, shape: tuple[int, ...]):
        self.gm = gm
        self.anchor = anchor
        self.shape = shape
        self.values: dict[fx.Node, tuple[str, str]] = {anchor: ("x0", "pre")}   # node -> (name, phase)
        self.operands: list[Operand] = []
        self._op_index: dict[Any, int] = {}

    def operand(self, value: Any, out_shape: tuple[int, ...], phase: str, mode: str | None,
                reduced: bool) -> tuple[str, Any] | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return "lit", float(value)
        if not isinstance(value, fx.Node):
            return None
        if value in self.values:
            name, ph = self.values[value]
            # after a reduction, per-element values of the first phase no longer exist
            return None if (reduced and ph == "pre") else ("v", name)
        if match.number(value) is not None:
            return self._add("scalar", value) if value.op == "get_attr" else ("lit", match.number(value))
        s = node_shape(value)
        if s is None or _dtype(value) != torch.float32 or len(s) > len(out_shape):
            return None
        rank = len(out_shape)
        if all(d == 1 for d in s):
            return self._add("scalar_t", value)
        if not reduced or mode == "spatial":
            if rank >= 2 and len(s) >= rank - 1 and match.per_feature(s, rank, 1) == "vector":
                return self._add("chan", value)
        if not reduced and tuple(s) == tuple(out_shape):
            return self._add("full", value)
        return None

    def _add(self, kind: str, node: fx.Node | None = None, attr: str | None = None) -> tuple[str, int]:
        key = (kind, node, attr)
        if key not in self._op_index:
            self._op_index[key] = len(self.operands)
            self.operands.append(Operand(kind, node, attr))
        return "o", self._op_index[key]

    def step(self, n: fx.Node, name: str, out_shape: tuple[int, ...], phase: str, mode: str | None,
             reduced: bool) -> Step | None:
        if node_shape(n) != tuple(out_shape) or _dtype(n) != torch.float32:
            return None
        mod = match.module_of(n, self.gm)
        if mod is not None and not reduced and n.args and isinstance(n.args[0], fx.Node) and n.args[0] in self.values:
            src = self.operand(n.args[0], out_shape, phase, mode, reduced)
            if isinstance(mod, nn.Dropout):          # identity in eval mode; the candidate runs eval only
                return Step(name, "identity", (), [src], n)
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and mod.affine \
                    and mod.track_running_stats and len(out_shape) >= 2 and out_shape[1] == mod.num_features:
                args = [src] + [self._add("chan", attr=f"{n.target}.{a}")
                                for a in ("running_mean", "running_var", "weight", "bias")]
                return Step(name, "batch_norm", (float(mod.eps),), args, n)
        e = ops.elementwise(n, self.gm)
        if e is None:
            return None
        op, extra = e
        if op in ops.BINARY:
            if op in ("maximum", "minimum") and not all(
                    isinstance(a, fx.Node) and node_shape(a) is not None for a in n.args[:2]):
                return None
            args = [self.operand(a, out_shape, phase, mode, reduced) for a in n.args[:2]]
            if any(a is None for a in args) or not any(a[0] == "v" for a in args):
                return None
            if op == "pow":
                if args[0][0] != "v" or args[1] not in (("lit", 2.0), ("lit", 3.0)):
                    return None
                return Step(name, "mul", (), [args[0], args[0]], n) if args[1][1] == 2.0 \
                    else Step(name, "cube", (), [args[0]], n)
            return Step(name, op, extra, args, n)
        if not n.args or not isinstance(n.args[0], fx.Node):
            return None
        a = self.operand(n.args[0], out_shape, phase, mode, reduced)
        if a is None or a[0] != "v":
            return None
        return Step(name, op, extra, [a], n)


def find_chain(gm: fx.GraphModule, anchor: fx.Node, allow_pivot: bool = True) -> Chain | None:
    """The longest chain from ``anchor`` whose only value used outside it is its last one, or None when none."""
    shape = node_shape(anchor)
    if not shape or _dtype(anchor) != torch.float32:
        return None
    b = _Builder(gm, anchor, shape)
    pre: list[Step] = []
    post: list[Step] = []
    pivot: Pivot | None = None
    cur_shape = shape
    nodes = list(gm.graph.nodes)
    last = anchor
    for n in nodes[nodes.index(anchor) + 1:]:
        if n.op == "output":
            break
        if not any(a in b.values for a in n.all_input_nodes):
            continue
        reduced = pivot is not None and pivot.op in REDUCTIONS
        phase = "post" if pivot else "pre"
        name = f"q{len(post)}" if pivot else f"p{len(pre)}"
        st = b.step(n, name, cur_shape, phase, pivot.mode if pivot else None, reduced)
        if st is not None:
            (post if pivot else pre).append(st)
            b.values[n] = (name, phase)
            last = n
            continue
        if pivot is None and allow_pivot and n.args and n.args[0] is last:
            pv = pivot_of(n, gm, last, shape)
            if pv is not None:
                pv.nodes = (n,) if pv.node is n else (n, pv.node)
                if pv.op in ("layer_norm", "group_norm"):
                    mod = match.module_of(n, gm)
                    if getattr(mod, "elementwise_affine", False) or getattr(mod, "affine", False):
                        pv.weight = b._add("chan", attr=f"{n.target}.weight")[1]
                        pv.bias = b._add("chan", attr=f"{n.target}.bias")[1]
                cur_shape = node_shape(pv.node) or ()
                if pv.op in NORMALIZERS and tuple(cur_shape) != tuple(shape):
                    break
                pivot = pv
                b.values[pv.node] = ("pv", "post")
                last = pv.node
                continue
        break
    return _trim(anchor, shape, pre, pivot, post, b.operands)


def _trim(anchor, shape, pre, pivot, post, operands) -> Chain | None:
    """Cut the chain at the last point where every earlier value is used only inside it."""
    steps: list[tuple[str, Any]] = [("pre", s) for s in pre] + ([("pivot", pivot)] if pivot else []) + \
        [("post", s) for s in post]
    while steps:
        kept = {anchor}
        for k, s in steps:
            kept |= set(s.nodes) if k == "pivot" else {s.node}
        last = steps[-1][1].node
        if all(u in kept for m in kept if m is not last for u in m.users):
            break
        steps.pop()
    if not steps:
        return None
    pre = [s for k, s in steps if k == "pre"]
    pv = next((s for k, s in steps if k == "pivot"), None)
    post = [s for k, s in steps if k == "post"]
    used = sorted({i for s in pre + post for kind, i in s.args if kind == "o"}
                  | ({i for i in (pv.weight, pv.bias) if i is not None} if pv else set()))
    remap = {old: new for new, old in enumerate(used)}
    for s in pre + post:
        s.args = [("o", remap[i]) if kind == "o" else (kind, i) for kind, i in s.args]
    if pv is not None:
        pv.weight = None if pv.weight is None else remap[pv.weight]
        pv.bias = None if pv.bias is None else remap[pv.bias]
    return Chain(anchor, shape, pre, pv, post, [operands[i] for i in used], steps[-1][1].node)
