"""The affine-region engine's parts: symbolic vectors and matrices (``Vec``, ``Mat``) written as the code that
computes them from the reference's parameters, a region's representation (``Rep``), and the readers that take a
Linear, a matmul by a constant, a convolution or a norm's affine apart. ``affine.py`` grows regions from them."""
from __future__ import annotations

import dataclasses
from typing import Any

import torch.fx as fx

from proposers.rewrites import match

@dataclasses.dataclass(frozen=True)
class Vec:
    code: str
    scalar: bool


@dataclasses.dataclass(frozen=True)
class Mat:
    dense: str | None = None     # weight (linear: out x in; conv: out x in/groups x k...)
    diag: Vec | None = None      # when not dense: diagonal values, None for the identity


ONE = Vec("1.0", True)


def vmul(a: Vec | None, b: Vec) -> Vec:
    return b if a is None else Vec(f"({a.code}) * ({b.code})", a.scalar and b.scalar)


def vadd(a: Vec | None, b: Vec | None) -> Vec | None:
    if a is None or b is None:
        return a or b
    return Vec(f"({a.code}) + ({b.code})", a.scalar and b.scalar)


def vneg(a: Vec | None) -> Vec | None:
    return None if a is None else Vec(f"(-({a.code}))", a.scalar)


def scale_rows(a: Mat, s: Vec, spatial: int) -> Mat:
    if a.dense is None:
        return Mat(diag=vmul(a.diag, s))
    if s.scalar:
        return Mat(f"({s.code}) * ({a.dense})")
    shape = ", ".join(["-1", "1"] + ["1"] * spatial)
    return Mat(f"({s.code}).reshape({shape}) * ({a.dense})")


def compose(w: str, a: Mat) -> Mat:
    """The matrix ``w @ a`` (``w`` dense, out x in)."""
    if a.dense is not None:
        return Mat(f"({w}) @ ({a.dense})")
    if a.diag is None:
        return Mat(w)
    if a.diag.scalar:
        return Mat(f"({w}) * ({a.diag.code})")
    return Mat(f"({w}) * ({a.diag.code}).reshape(1, -1)")


def matvec(w: str, c: Vec | None) -> Vec | None:
    if c is None:
        return None
    return Vec(f"_ks_mv({w}, torch.as_tensor({c.code}, dtype=torch.float64))", False) if c.scalar else \
        Vec(f"({w}) @ ({c.code})", False)


def madd(a: Mat, b: Mat) -> Mat:
    if a.dense is None and b.dense is None:
        return Mat(diag=vadd(a.diag or ONE, b.diag or ONE))
    if a.dense is None:
        a, b = b, a
    if b.dense is None:
        return Mat(f"_ks_add_diag({a.dense}, {(b.diag or ONE).code})")
    return Mat(f"({a.dense}) + ({b.dense})")


def mneg(a: Mat, spatial: int = 0) -> Mat:
    return scale_rows(a, Vec("-1.0", True), spatial)


@dataclasses.dataclass(frozen=True)
class ConvCfg:
    nd: int
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int


@dataclasses.dataclass(frozen=True)
class Rep:
    family: str                       # "linear" (feature axis last) or "conv" (feature axis 1)
    base: fx.Node
    base_ops: tuple = ()              # ("norm", node) | ("reduce", kind, dims, keepdim)
    a: Mat = Mat()
    c: Vec | None = None
    conv: ConvCfg | None = None
    nlin: int = 0
    nops: int = 0
    dtype_src: str = ""
    squeeze: int | None = None        # a feature reduction without keepdim: terminal
    eval_only: tuple[str, ...] = ()
    used: frozenset = frozenset()     # the rules that built this region

    @property
    def spatial(self) -> int:
        return self.conv.nd if self.conv else 0

    def worth(self) -> bool:
        return self.nlin >= 1 and self.nops >= 2 and self.a.dense is not None


def as_tuple(v: Any, nd: int) -> tuple[int, ...] | None:
    if isinstance(v, int):
        return (v,) * nd
    if isinstance(v, (tuple, list)) and len(v) == nd and all(isinstance(x, int) for x in v):
        return tuple(v)
    return None


# ---- seeds: a Linear, a matmul by a constant, a convolution, a norm's affine -------------------------------------

def linear_parts(n: fx.Node, gm: fx.GraphModule) -> tuple[fx.Node, str, Vec | None, str] | None:
    """(input, weight code, bias, dtype source) of a Linear-like node."""
    k = match.kind(n, gm)
    if k == "linear":
        mod = match.module_of(n, gm)
        if mod is not None:
            bias = Vec(f"_ks_get(self, {n.target + '.bias'!r})", False) if mod.bias is not None else None
            return n.args[0], f"_ks_get(self, {n.target + '.weight'!r})", bias, match.attr_code(n.target + ".weight")
        x, w, b = n.args[0], match.arg(n, 1, "weight"), match.arg(n, 2, "bias")
        if not isinstance(w, fx.Node) or not match.is_static(w) or not match.is_static(b):
            return None
        wc, bc = match.static_code(w), match.static_code(b)
        if wc is None or bc is None:
            return None
        return x, wc, (None if b is None else Vec(bc, False)), f"({wc.replace('_ks_get', '_ks_raw')})"
    if k == "matmul" and len(n.args) == 2 and not n.kwargs:
        x, p = n.args
        ps = match.shape(p)
        xs = match.shape(x)
        if isinstance(p, fx.Node) and match.is_static(p) and ps is not None and len(ps) == 2 and xs and len(xs) >= 2:
            pc = match.static_code(p)
            if pc is not None:
                return x, f"({pc}).t()", None, f"({pc.replace('_ks_get', '_ks_raw')})"
    return None


def conv_parts(n: fx.Node, gm: fx.GraphModule) -> tuple[fx.Node, str, Vec | None, ConvCfg, str] | None:
    if match.kind(n, gm) != "conv":
        return None
    mod = match.module_of(n, gm)
    if mod is not None:
        nd = len(mod.kernel_size)
        if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
            return None
        cfg = ConvCfg(nd, tuple(mod.stride), tuple(mod.padding), tuple(mod.dilation), mod.groups)
        bias = Vec(f"_ks_get(self, {n.target + '.bias'!r})", False) if mod.bias is not None else None
        return n.args[0], f"_ks_get(self, {n.target + '.weight'!r})", bias, cfg, match.attr_code(n.target + ".weight")
    x, w, b = n.args[0], match.arg(n, 1, "weight"), match.arg(n, 2, "bias")
    ws = match.shape(w)
    if not isinstance(w, fx.Node) or not match.is_static(w) or not match.is_static(b) or ws is None:
        return None
    nd = len(ws) - 2
    vals = [as_tuple(match.arg(n, i, name, d), nd) for i, name, d in ((3, "stride", 1), (4, "padding", 0),
                                                                   (5, "dilation", 1))]
    groups = match.arg(n, 6, "groups", 1)
    wc, bc = match.static_code(w), match.static_code(b)
    if any(v is None for v in vals) or not isinstance(groups, int) or wc is None or bc is None:
        return None
    cfg = ConvCfg(nd, vals[0], vals[1], vals[2], groups)
    return x, wc, (None if b is None else Vec(bc, False)), cfg, f"({wc.replace('_ks_get', '_ks_raw')})"


def norm_affine_of(n: fx.Node, gm: fx.GraphModule) -> tuple[Vec, Vec | None] | None:
    k = match.kind(n, gm)
    mod = match.module_of(n, gm)
    if k in ("layer_norm", "rms_norm") and mod is not None:
        if getattr(mod, "weight", None) is None or len(mod.normalized_shape) != 1:
            return None
        bias = getattr(mod, "bias", None)
        return (Vec(f"_ks_get(self, {n.target + '.weight'!r})", False),
                None if bias is None else Vec(f"_ks_get(self, {n.target + '.bias'!r})", False))
    if k == "layer_norm" and mod is None:
        shape, w, b = match.arg(n, 1, "normalized_shape"), match.arg(n, 2, "weight"), match.arg(n, 3, "bias")
        if not isinstance(shape, (tuple, list)) or len(shape) != 1 or not isinstance(w, fx.Node):
            return None
        if not (match.is_static(w) and match.is_static(b)):
            return None
        wc, bc = match.static_code(w), match.static_code(b)
        if wc is None or bc is None:
            return None
        return Vec(f"({wc}).reshape(-1)", False), (None if b is None else Vec(f"({bc}).reshape(-1)", False))
    return None
