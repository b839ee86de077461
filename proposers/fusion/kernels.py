"""Triton kernel sources for a chain: an elementwise kernel, a row kernel (reductions, softmaxes, norms), a matmul
whose epilogue is the chain, and the finisher that combines a matmul's per-tile row reductions.

Every kernel computes in float32. Sizes are run-time arguments (``A``, ``C``, ``S``: the chain's tensor seen as
first dimension, dimension 1 and the rest), so one source serves every scale of a problem; block shapes, warps,
stages and the matmul's precision are compile-time constants chosen by the tuning point.
"""
from __future__ import annotations

import math

from proposers.fusion import ops
from proposers.fusion.chain import NORMALIZERS, Chain, Step


def lit(x: float) -> str:
    if math.isnan(x):
        return 'float("nan")'
    if math.isinf(x):
        return 'float("inf")' if x > 0 else 'float("-inf")'
    return repr(float(x))


class Ctx:
    """How operands are read where a chain's steps run: per element of a tile, or per row after a reduction."""

    def __init__(self, chain: Chain, chan: str, offs: str, msk: str, row: bool = False):
        self.chain, self.chan, self.offs, self.msk, self.row = chain, chan, offs, msk, row

    def operand(self, j: int) -> str:
        kind = self.chain.operands[j].kind
        if kind == "scalar":
            return f"s{j}"
        if kind == "scalar_t":
            return f"t{j}"
        if kind == "chan":
            return f"tl.load(o{j}_ptr + {self.chan}, mask={self.msk}, other=0.0)"
        return f"tl.load(o{j}_ptr + {self.offs}, mask={self.msk}, other=0.0)"

    def steps(self, steps: list[Step]) -> list[str]:
        out = []
        for s in steps:
            a = [n if k == "v" else lit(n) if k == "lit" else self.operand(n) for k, n in s.args]
            if s.op == "batch_norm":
                x, mean, var, w, b = a
                expr = f"(({x} - {mean}) * (1.0 / tl.sqrt({var} + {lit(s.extra[0])})) * {w} + {b})"
            elif s.op == "cube":
                expr = f"({a[0]} * {a[0]} * {a[0]})"
            elif s.op in ops.BINARY:
                expr = ops.binary_expr(s.op, a[0], a[1])
            else:
                expr = ops.unary_expr(s.op, s.extra, a[0])
            out.append(f"{s.name} = {expr}")
        return out


def operand_params(chain: Chain) -> list[str]:
    return [f"s{j}" if o.kind == "scalar" else f"o{j}_ptr" for j, o in enumerate(chain.operands)]


def _preloads(chain: Chain) -> list[str]:
    return [f"t{j} = tl.load(o{j}_ptr).to(tl.float32)" for j, o in enumerate(chain.operands) if o.kind == "scalar_t"]


def _pre_value(chain: Chain) -> str:
    return chain.pre[-1].name if chain.pre else "x0"


def _block(lines: list[str], indent: int) -> str:
    pad = " " * indent
    return "\n".join(pad + ln for block in lines for ln in block.split("\n"))


def _load_x0(split: bool) -> list[str]:
    out = ["x0 = tl.load(x_ptr + offs, mask=msk, other=0.0).to(tl.float32)"]
    if split:
        out += ["for k in tl.static_range(1, SPLIT):",
                "    x0 += tl.load(x_ptr + k * split_stride + offs, mask=msk, other=0.0)"]
    return out


def flat_kernel(chain: Chain, name: str) -> str:
    """One pass over every element: the chain has no row operation."""
    params = ", ".join(["x_ptr", "y_ptr", *operand_params(chain), "numel", "C", "S", "split_stride",
                        "SPLIT: tl.constexpr", "BLOCK: tl.constexpr"])
    ctx = Ctx(chain, "ch", "offs", "msk")
    body = ["pid = tl.program_id(0).to(tl.int64)", *_preloads(chain),
            "offs = pid * BLOCK + tl.arange(0, BLOCK)", "msk = offs < numel", "ch = (offs // S) % C",
            *_load_x0(True), *ctx.steps(chain.pre), f"tl.store(y_ptr + offs, {_pre_value(chain)}, mask=msk)"]
    return f"@triton.jit\ndef {name}({params}):\n{_block(body, 4)}\n"


def _row_geometry(mode: str) -> list[str]:
    """``r`` (rows, [BLOCK_R, 1]) and ``cols`` ([1, BLOCK]) to offsets; the channel of each element."""
    if mode == "feat":
        return ["base = (r // S) * C * S + r % S", "stride = S"]
    if mode == "spatial":
        return ["base = r * L", "stride = 1", "rch = r % C"]
    return ["base = r * L", "stride = 1", "cpg = C // G"]


def _chan_expr(mode: str) -> str:
    return {"feat": "cols", "spatial": "rch", "group": "(r % G) * cpg + cols // S"}[mode]


def _tile(chain: Chain, split: bool) -> list[str]:
    ctx = Ctx(chain, "ch", "offs", "msk")
    return ["cols = start + tl.arange(0, BLOCK)[None, :]", "msk = rmask & (cols < L)", "offs = base + cols * stride",
            f"ch = {_chan_expr(chain.pivot.mode)}", *_load_x0(split), *ctx.steps(chain.pre)]


def row_kernel(chain: Chain, name: str) -> str:
    """One program per ``BLOCK_R`` rows; each row is reduced (or normalised) in ``BLOCK``-wide tiles."""
    pv = chain.pivot
    assert pv is not None
    params = ", ".join(["x_ptr", "y_ptr", *operand_params(chain), "R", "L", "C", "S", "G", "split_stride",
                        "SPLIT: tl.constexpr", "BLOCK_R: tl.constexpr", "BLOCK: tl.constexpr"])
    v = _pre_value(chain)
    head = ["r = (tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R))[:, None]", "rmask = r < R",
            *_row_geometry(pv.mode), *_preloads(chain)]
    tile = _tile(chain, True)
    loop = "for start in range(0, L, BLOCK):"
    body: list[str] = list(head)
    online = ["vv = tl.where(msk, " + v + ", float('-inf'))", "m_new = tl.maximum(m, vv)",
              "s = s * tl.exp(m - m_new) + tl.exp(vv - m_new)", "s = tl.where(m_new == float('-inf'), 0.0, s)",
              "m = m_new"]
    finish_online = ["mx = tl.max(m, 1)[:, None]", "mxs = tl.where(mx == float('-inf'), 0.0, mx)",
                     "total = tl.sum(s * tl.exp(m - mxs), 1)[:, None]"]
    out_ctx = Ctx(chain, _chan_expr(pv.mode), "offs", "msk")
    if pv.op in ("sum", "mean", "amax", "amin", "logsumexp"):
        if pv.op == "logsumexp":
            body += ["m = tl.full([BLOCK_R, BLOCK], float('-inf'), tl.float32)",
                     "s = tl.zeros([BLOCK_R, BLOCK], tl.float32)", loop, _block(tile + online, 4), *finish_online,
                     "pv = mxs + tl.log(total)"]
        else:
            init, upd, fin = {
                "sum": ("tl.zeros([BLOCK_R, BLOCK], tl.float32)", f"acc + tl.where(msk, {v}, 0.0)", "tl.sum(acc, 1)"),
                "mean": ("tl.zeros([BLOCK_R, BLOCK], tl.float32)", f"acc + tl.where(msk, {v}, 0.0)",
                         "tl.sum(acc, 1) / L"),
                "amax": ("tl.full([BLOCK_R, BLOCK], float('-inf'), tl.float32)",
                         f"tl.maximum(acc, tl.where(msk, {v}, float('-inf')))", "tl.max(acc, 1)"),
                "amin": ("tl.full([BLOCK_R, BLOCK], float('inf'), tl.float32)",
                         f"tl.minimum(acc, tl.where(msk, {v}, float('inf')))", "tl.min(acc, 1)"),
            }[pv.op]
            body += [f"acc = {init}", loop, _block(tile + [f"acc = {upd}"], 4), f"pv = ({fin})[:, None]"]
        row_ctx = Ctx(chain, "rch" if pv.mode == "spatial" else "r", "r", "rmask", row=True)
        body += row_ctx.steps(chain.post)
        body.append(f"tl.store(y_ptr + r, {chain.result}, mask=rmask)")
    elif pv.op in ("softmax", "log_softmax"):
        body += ["m = tl.full([BLOCK_R, BLOCK], float('-inf'), tl.float32)", "s = tl.zeros([BLOCK_R, BLOCK], tl.float32)",
                 loop, _block(tile + online, 4), *finish_online]
        expr = f"tl.exp({v} - mxs) / total" if pv.op == "softmax" else f"{v} - mxs - tl.log(total)"
        body += [loop, _block(tile + [f"pv = {expr}", *out_ctx.steps(chain.post),
                                      f"tl.store(y_ptr + offs, {chain.result}, mask=msk)"], 4)]
    else:  # layer_norm, group_norm: mean, then variance about it, then the normalised output
        body += ["acc = tl.zeros([BLOCK_R, BLOCK], tl.float32)", loop,
                 _block(tile + [f"acc += tl.where(msk, {v}, 0.0)"], 4), "mean = (tl.sum(acc, 1) / L)[:, None]",
                 "acc = tl.zeros([BLOCK_R, BLOCK], tl.float32)", loop,
                 _block(tile + [f"d = tl.where(msk, {v} - mean, 0.0)", "acc += d * d"], 4),
                 f"rstd = 1.0 / tl.sqrt((tl.sum(acc, 1) / L)[:, None] + {lit(pv.eps)})"]
        affine = [f"pv = ({v} - mean) * rstd"]
        if pv.weight is not None:
            affine.append(f"pv = pv * {out_ctx.operand(pv.weight)} + {out_ctx.operand(pv.bias)}")
        body += [loop, _block(tile + affine + out_ctx.steps(chain.post) +
                              [f"tl.store(y_ptr + offs, {chain.result}, mask=msk)"], 4)]
    return f"@triton.jit\ndef {name}({params}):\n{_block(body, 4)}\n"


def gemm_kernel(chain: Chain, name: str) -> str:
    """``x0 = a @ b`` (``a``: M x K, ``b``: K x N, any strides) in ``BLOCK_M x BLOCK_N`` tiles, grouped by ``GROUP_M``
    rows of tiles for L2 reuse, ``K`` split in ``SPLIT_K`` parts. With ``EPI`` the tile runs the chain's elementwise
    steps and, for a row reduction, stores each tile's partial (two for logsumexp); otherwise it stores the raw
    product of its part of ``K`` for a row or elementwise kernel to finish."""
    red = chain.pivot.op if chain.pivot is not None else None
    params = ", ".join(["a_ptr", "b_ptr", "y_ptr", "p_ptr", "q_ptr", *operand_params(chain), "M", "N", "K",
                        "sam", "sak", "sbk", "sbn", "EPI: tl.constexpr", "PREC: tl.constexpr", "EVEN_K: tl.constexpr",
                        "BLOCK_M: tl.constexpr", "BLOCK_N: tl.constexpr", "BLOCK_K: tl.constexpr",
                        "GROUP_M: tl.constexpr", "SPLIT_K: tl.constexpr"])
    ctx = Ctx(chain, "rn[None, :]", "offs", "msk")
    v = _pre_value(chain)
    body = [
        "pid = tl.program_id(0)", "pid_k = tl.program_id(1)",
        "num_m = tl.cdiv(M, BLOCK_M)", "num_n = tl.cdiv(N, BLOCK_N)",
        "width = GROUP_M * num_n", "group = pid // width", "first_m = group * GROUP_M",
        "rows_in_group = tl.minimum(num_m - first_m, GROUP_M)",
        "pid_m = first_m + (pid % width) % rows_in_group", "pid_n = (pid % width) // rows_in_group",
        "rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)", "rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)",
        "k_tiles = tl.cdiv(K, BLOCK_K)", "per_split = tl.cdiv(k_tiles, SPLIT_K)",
        "k_first = pid_k * per_split", "k_last = tl.minimum(k_first + per_split, k_tiles)",
        # rows and columns past the edge read row M-1's neighbours modulo M (never out of bounds) and are not stored
        "am = (rm % M).to(tl.int64)", "bn = (rn % N).to(tl.int64)",
        "rk = k_first * BLOCK_K + tl.arange(0, BLOCK_K)",
        "a_ptrs = a_ptr + am[:, None] * sam + rk[None, :].to(tl.int64) * sak",
        "b_ptrs = b_ptr + rk[:, None].to(tl.int64) * sbk + bn[None, :] * sbn",
        "acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)",
        "for kt in range(k_first, k_last):",
        "    if EVEN_K:",
        "        a = tl.load(a_ptrs)",
        "        b = tl.load(b_ptrs)",
        "    else:",
        "        kk = kt * BLOCK_K + tl.arange(0, BLOCK_K)",
        "        a = tl.load(a_ptrs, mask=kk[None, :] < K, other=0.0)",
        "        b = tl.load(b_ptrs, mask=kk[:, None] < K, other=0.0)",
        "    acc = tl.dot(a, b, acc, input_precision=PREC)",
        "    a_ptrs += BLOCK_K * sak",
        "    b_ptrs += BLOCK_K * sbk",
        "msk = (rm[:, None] < M) & (rn[None, :] < N)",
        "offs = rm[:, None].to(tl.int64) * N + rn[None, :]",
        "if EPI:",
    ]
    epi = [*_preloads(chain), "x0 = acc", *ctx.steps(chain.pre)]
    if red in NORMALIZERS:      # a normaliser needs whole rows: this matmul only ever stores raw products
        epi = ["tl.store(y_ptr + offs, acc, mask=msk)"]
    elif red is None:
        epi.append(f"tl.store(y_ptr + offs, {v}, mask=msk)")
    else:
        pidx = "rm.to(tl.int64) * num_n + pid_n"
        if red in ("sum", "mean"):
            epi.append(f"tl.store(p_ptr + {pidx}, tl.sum(tl.where(msk, {v}, 0.0), 1), mask=rm < M)")
        elif red == "amax":
            epi.append(f"tl.store(p_ptr + {pidx}, tl.max(tl.where(msk, {v}, float('-inf')), 1), mask=rm < M)")
        elif red == "amin":
            epi.append(f"tl.store(p_ptr + {pidx}, tl.min(tl.where(msk, {v}, float('inf')), 1), mask=rm < M)")
        else:
            epi += [f"vv = tl.where(msk, {v}, float('-inf'))", "mt = tl.max(vv, 1)",
                    "mts = tl.where(mt == float('-inf'), 0.0, mt)",
                    "st = tl.sum(tl.exp(vv - mts[:, None]), 1)",
                    f"tl.store(p_ptr + {pidx}, mt, mask=rm < M)", f"tl.store(q_ptr + {pidx}, st, mask=rm < M)"]
    body.append(_block(epi, 4))
    body += ["else:", "    tl.store(y_ptr + pid_k.to(tl.int64) * M * N + offs, acc, mask=msk)"]
    return f"@triton.jit\ndef {name}({params}):\n{_block(body, 4)}\n"


def finish_kernel(chain: Chain, name: str) -> str:
    """Combine a matmul's per-tile row partials (``T`` per row) into the row's value, then the steps after it."""
    red = chain.pivot.op
    params = ", ".join(["p_ptr", "q_ptr", "y_ptr", *operand_params(chain), "R", "T", "N",
                        "BLOCK_R: tl.constexpr", "BLOCK: tl.constexpr"])
    body = ["r = (tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R))[:, None]", "rmask = r < R",
            *_preloads(chain)]
    tile = ["cols = start + tl.arange(0, BLOCK)[None, :]", "msk = rmask & (cols < T)", "offs = r * T + cols"]
    if red in ("sum", "mean"):
        body += ["acc = tl.zeros([BLOCK_R, BLOCK], tl.float32)", "for start in range(0, T, BLOCK):",
                 _block(tile + ["acc += tl.load(p_ptr + offs, mask=msk, other=0.0)"], 4),
                 "pv = tl.sum(acc, 1)[:, None]" + (" / N" if red == "mean" else "")]
    elif red in ("amax", "amin"):
        fill, fn = ("float('-inf')", "maximum") if red == "amax" else ("float('inf')", "minimum")
        body += [f"acc = tl.full([BLOCK_R, BLOCK], {fill}, tl.float32)", "for start in range(0, T, BLOCK):",
                 _block(tile + [f"acc = tl.{fn}(acc, tl.load(p_ptr + offs, mask=msk, other={fill}))"], 4),
                 f"pv = tl.{'max' if red == 'amax' else 'min'}(acc, 1)[:, None]"]
    else:
        body += ["m = tl.full([BLOCK_R, BLOCK], float('-inf'), tl.float32)", "s = tl.zeros([BLOCK_R, BLOCK], tl.float32)",
                 "for start in range(0, T, BLOCK):",
                 _block(tile + ["mt = tl.load(p_ptr + offs, mask=msk, other=float('-inf'))",
                                "st = tl.load(q_ptr + offs, mask=msk, other=0.0)", "m_new = tl.maximum(m, mt)",
                                "ms = tl.where(m_new == float('-inf'), 0.0, m_new)",
                                "s = s * tl.exp(m - ms) + st * tl.exp(mt - ms)", "m = m_new"], 4),
                 "mx = tl.max(m, 1)[:, None]", "mxs = tl.where(mx == float('-inf'), 0.0, mx)",
                 "pv = mxs + tl.log(tl.sum(s * tl.exp(m - mxs), 1)[:, None])"]
    body += Ctx(chain, "r", "r", "rmask", row=True).steps(chain.post)
    body.append(f"tl.store(y_ptr + r, {chain.result}, mask=rmask)")
    return f"@triton.jit\ndef {name}({params}):\n{_block(body, 4)}\n"
