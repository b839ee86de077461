"""C++/OpenMP row kernels for the CPU: softmax, log-softmax, LayerNorm and RMSNorm over the last axis.

One parallel loop over rows (``num_threads`` and a static schedule of ``rows_per_task`` rows), with the inner loops
vectorised (``omp simd`` with ``simdlen``). The extension is built with ``load_inline`` into
``<build_dir>/ks_<hash>`` so that equal sources share one build. Exact up to the order of the row reductions.
"""
from __future__ import annotations

import hashlib
from typing import Any

from proposers.rewrites.problem import Problem, Traced
from proposers.templates import Choice, IntRange, InvalidPoint, Pow2, manifest, rows

FAMILY = "cpp_rows"
BACKEND = "cpp"
DEVICES = ("cpu",)


def bind(traced: Traced) -> dict[str, Any] | None:
    return rows.bind(traced)


def space(binding: dict[str, Any], cores: int) -> dict[str, Any]:
    return {
        "threads": IntRange(1, max(1, cores), log=True),
        "rows_per_task": Pow2(1, 16),
        "simdlen": Pow2(4, 16),
        "two_pass_exp": Choice((False, True)),   # softmax: store exp in the first pass (True) or recompute it
    }


_PROLOGUE = r"""
#include <torch/extension.h>
#include <cmath>
#include <limits>
"""

_KERNELS = {
    "softmax": r"""
    float m = -std::numeric_limits<float>::infinity();
    #pragma omp simd simdlen(SIMD) reduction(max:m)
    for (int64_t j = 0; j < n; ++j) m = xr[j] > m ? xr[j] : m;
    float s = 0.f;
    #if TWO_PASS
    #pragma omp simd simdlen(SIMD) reduction(+:s)
    for (int64_t j = 0; j < n; ++j) { float e = std::exp(xr[j] - m); yr[j] = e; s += e; }
    const float inv = 1.f / s;
    #pragma omp simd simdlen(SIMD)
    for (int64_t j = 0; j < n; ++j) yr[j] *= inv;
    #else
    #pragma omp simd simdlen(SIMD) reduction(+:s)
    for (int64_t j = 0; j < n; ++j) s += std::exp(xr[j] - m);
    const float inv = 1.f / s;
    #pragma omp simd simdlen(SIMD)
    for (int64_t j = 0; j < n; ++j) yr[j] = std::exp(xr[j] - m) * inv;
    #endif
""",
    "log_softmax": r"""
    float m = -std::numeric_limits<float>::infinity();
    #pragma omp simd simdlen(SIMD) reduction(max:m)
    for (int64_t j = 0; j < n; ++j) m = xr[j] > m ? xr[j] : m;
    float s = 0.f;
    #pragma omp simd simdlen(SIMD) reduction(+:s)
    for (int64_t j = 0; j < n; ++j) s += std::exp(xr[j] - m);
    const float lse = m + std::log(s);
    #pragma omp simd simdlen(SIMD)
    for (int64_t j = 0; j < n; ++j) yr[j] = xr[j] - lse;
""",
    "layer_norm": r"""
    double s = 0.0;
    #pragma omp simd simdlen(SIMD) reduction(+:s)
    for (int64_t j = 0; j < n; ++j) s += xr[j];
    const float mean = (float)(s / n);
    double v = 0.0;
    #pragma omp simd simdlen(SIMD) reduction(+:v)
    for (int64_t j = 0; j < n; ++j) { float d = xr[j] - mean; v += (double)d * d; }
    const float rstd = 1.f / std::sqrt((float)(v / n) + eps);
    #pragma omp simd simdlen(SIMD)
    for (int64_t j = 0; j < n; ++j) yr[j] = (xr[j] - mean) * rstd * w[j] + b[j];
""",
    "rms_norm": r"""
    double s = 0.0;
    #pragma omp simd simdlen(SIMD) reduction(+:s)
    for (int64_t j = 0; j < n; ++j) s += (double)xr[j] * xr[j];
    const float r = 1.f / std::sqrt((float)(s / n) + eps);
    #pragma omp simd simdlen(SIMD)
    for (int64_t j = 0; j < n; ++j) yr[j] = xr[j] * r * w[j];
""",
}


def cpp_source(op: str, point: dict[str, Any]) -> str:
    if op not in _KERNELS:
        raise InvalidPoint(f"no C++ row kernel for {op!r}")
    if point["two_pass_exp"] and op != "softmax":
        raise InvalidPoint("two_pass_exp only applies to softmax")
    body = _KERNELS[op].replace("SIMD", str(int(point["simdlen"])))
    body = body.replace("#if TWO_PASS", "#if 1" if point["two_pass_exp"] else "#if 0")
    return _PROLOGUE + f"""
torch::Tensor rows(torch::Tensor x, torch::Tensor wt, torch::Tensor bt, double eps_d) {{
    TORCH_CHECK(x.scalar_type() == torch::kFloat32 && x.is_contiguous() && x.device().is_cpu());
    auto y = torch::empty_like(x);
    const int64_t n = x.size(-1);
    const int64_t rows = n ? x.numel() / n : 0;
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    const float* w = wt.numel() ? wt.data_ptr<float>() : nullptr;
    const float* b = bt.numel() ? bt.data_ptr<float>() : nullptr;
    const float eps = (float)eps_d;
    (void)w; (void)b; (void)eps;
    #pragma omp parallel for num_threads({int(point["threads"])}) schedule(static, {int(point["rows_per_task"])})
    for (int64_t i = 0; i < rows; ++i) {{
    const float* xr = xp + i * n;
    float* yr = yp + i * n;
{body}
    }}
    return y;
}}
"""


def render(problem: Problem, binding: dict[str, Any], point: dict[str, Any], build_dir: str | None) -> str:
    op = binding["op"]
    cpp = cpp_source(op, point)
    digest = hashlib.sha256(cpp.encode()).hexdigest()[:16]
    if op == "layer_norm":
        m = binding["module"]
        args = f"self.{m}.weight, self.{m}.bias, self.{m}.eps"
    elif op == "rms_norm":
        args = f"self.{binding['weight']}, _KS_EMPTY, {binding['eps']}"
    else:
        args = "_KS_EMPTY, _KS_EMPTY, 0.0"
    build = (f"    path = os.path.join({build_dir!r}, 'ks_{digest}')\n    os.makedirs(path, exist_ok=True)\n"
             if build_dir else "    path = None\n")
    return f'''# kernelswarm template: {FAMILY} ({op})
{problem.model_source()}
# ---- generated ----
import os

import torch
from torch.utils.cpp_extension import load_inline

SPACE = {manifest(space(binding, max(point["threads"], 1)))!r}
POINT = {dict(sorted(point.items()))!r}
_KS_CPP = r"""{cpp}"""
_KS_EMPTY = torch.empty(0)


def _ks_build():
{build}    return load_inline(name="ks_{digest}", cpp_sources=[_KS_CPP], functions=["rows"], build_directory=path,
                       extra_cflags=["-O3", "-march=native", "-fopenmp", "-fno-math-errno"],
                       extra_ldflags=["-fopenmp"], verbose=False)


class ModelNew(Model):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ks_ext = _ks_build()

    def forward(self, x):
        if x.dtype != torch.float32 or not x.device.type == "cpu":
            return super().forward(x)
        return self._ks_ext.rows(x.contiguous(), {args})
'''
