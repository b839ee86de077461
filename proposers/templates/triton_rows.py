"""Triton row kernels for CUDA: softmax, log-softmax, LayerNorm and RMSNorm over the last axis.

One program per row, looping over the row in ``BLOCK`` columns (an online max/sum for the softmaxes, float32
accumulation for the norms), launched with ``num_warps`` and ``num_stages``. Written for and verified on the GPU
host; on the CPU ``DEVICES`` keeps the tuner from proposing them.
"""
from __future__ import annotations

from typing import Any

from proposers.rewrites.problem import Problem, Traced
from proposers.templates import IntRange, InvalidPoint, Pow2, manifest, rows

FAMILY = "triton_rows"
BACKEND = "triton"
DEVICES = ("cuda",)


def bind(traced: Traced) -> dict[str, Any] | None:
    return rows.bind(traced)


def space(binding: dict[str, Any], cores: int) -> dict[str, Any]:
    return {"BLOCK": Pow2(256, 8192), "num_warps": Pow2(2, 16), "num_stages": IntRange(1, 3)}


_KERNELS = {
    "softmax": '''
@triton.jit
def _ks_kernel(x_ptr, y_ptr, w_ptr, b_ptr, n, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_ptr += row * n
    y_ptr += row * n
    m = tl.full([BLOCK], float("-inf"), tl.float32)
    s = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + cols, mask=cols < n, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, x)
        s = s * tl.exp(m - m_new) + tl.exp(x - m_new)
        s = tl.where(m_new == float("-inf"), 0.0, s)
        m = m_new
    mx = tl.max(m, 0)
    total = tl.sum(s * tl.exp(m - mx), 0)
    for start in range(0, n, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + cols, mask=cols < n, other=float("-inf")).to(tl.float32)
        OUT
''',
    "layer_norm": '''
@triton.jit
def _ks_kernel(x_ptr, y_ptr, w_ptr, b_ptr, n, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_ptr += row * n
    y_ptr += row * n
    acc = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        acc += tl.load(x_ptr + cols, mask=cols < n, other=0.0).to(tl.float32)
    mean = tl.sum(acc, 0) / n
    acc = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + cols, mask=cols < n, other=0.0).to(tl.float32)
        d = tl.where(cols < n, x - mean, 0.0)
        acc += d * d
    rstd = 1.0 / tl.sqrt(tl.sum(acc, 0) / n + eps)
    for start in range(0, n, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        msk = cols < n
        x = tl.load(x_ptr + cols, mask=msk, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols, mask=msk, other=0.0)
        b = tl.load(b_ptr + cols, mask=msk, other=0.0)
        tl.store(y_ptr + cols, (x - mean) * rstd * w + b, mask=msk)
''',
    "rms_norm": '''
@triton.jit
def _ks_kernel(x_ptr, y_ptr, w_ptr, b_ptr, n, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_ptr += row * n
    y_ptr += row * n
    acc = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + cols, mask=cols < n, other=0.0).to(tl.float32)
        acc += x * x
    r = 1.0 / tl.sqrt(tl.sum(acc, 0) / n + eps)
    for start in range(0, n, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        msk = cols < n
        x = tl.load(x_ptr + cols, mask=msk, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols, mask=msk, other=0.0)
        tl.store(y_ptr + cols, x * r * w, mask=msk)
''',
}
_KERNELS["log_softmax"] = _KERNELS["softmax"].replace(
    "OUT", "tl.store(y_ptr + cols, x - mx - tl.log(total), mask=cols < n)")
_KERNELS["softmax"] = _KERNELS["softmax"].replace(
    "OUT", "tl.store(y_ptr + cols, tl.exp(x - mx) / total, mask=cols < n)")


def render(problem: Problem, binding: dict[str, Any], point: dict[str, Any], build_dir: str | None) -> str:
    op = binding["op"]
    if op not in _KERNELS:
        raise InvalidPoint(f"no Triton row kernel for {op!r}")
    block = int(point["BLOCK"])
    if block & (block - 1):
        raise InvalidPoint("BLOCK must be a power of two")
    if op == "layer_norm":
        m = binding["module"]
        args = f"self.{m}.weight, self.{m}.bias, self.{m}.eps"
    elif op == "rms_norm":
        args = f"self.{binding['weight']}, self.{binding['weight']}, {binding['eps']}"
    else:
        args = "x, x, 0.0"
    return f'''# kernelswarm template: {FAMILY} ({op})
{problem.model_source()}
# ---- generated ----
import torch
import triton
import triton.language as tl

SPACE = {manifest(space(binding, 1))!r}
POINT = {dict(sorted(point.items()))!r}
{_KERNELS[op]}

class ModelNew(Model):
    def forward(self, x):
        if not x.is_cuda or x.dtype != torch.float32:
            return super().forward(x)
        x = x.contiguous()
        y = torch.empty_like(x)
        n = x.shape[-1]
        w, b, eps = {args}
        _ks_kernel[(x.numel() // n,)](x, y, w, b, n, float(eps), BLOCK={block}, num_warps={int(point["num_warps"])},
                                      num_stages={int(point["num_stages"])})
        return y
'''
