"""Comparing a candidate's outputs with the reference's, in the trusted process only.

``|out - ref| <= atol * max(1, rms(ref)) + rtol * |ref|`` per element, computed in float64, with NaN and Inf
allowed only where the reference has them. The relative Frobenius error is recorded for every check and must also
stay under a bound, so that a near-constant output cannot hide under an absolute tolerance.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from evaluators import digest

HALF = (torch.float16, torch.bfloat16)


@dataclasses.dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    fro: float      # bound on ||out - ref||_F / ||ref||_F


def tolerance_for(dtype: torch.dtype, policy: Any, override: dict[str, float] | None = None) -> Tolerance:
    if dtype in HALF:
        tol = Tolerance(policy.atol_half, policy.rtol_half, 5 * policy.rtol_half)
    else:
        tol = Tolerance(policy.atol_fp32, policy.rtol_fp32, 10 * policy.rtol_fp32)
    if override:
        tol = dataclasses.replace(tol, **{k: float(v) for k, v in override.items() if k in ("atol", "rtol", "fro")})
    return tol


@dataclasses.dataclass(frozen=True)
class Comparison:
    ok: bool
    reason: str
    max_abs_err: float
    max_rel_err: float
    rel_fro_err: float
    structural: bool = False     # wrong count, shape, dtype or device: a bad output, not a numerical one


def _structure_problem(out: list[Any], ref: list[Any], devices: list[str], device: str) -> str | None:
    if len(out) != len(ref):
        return f"returned {len(out)} outputs, the reference returns {len(ref)}"
    for i, (o, r) in enumerate(zip(out, ref)):
        if tuple(o.shape) != tuple(r.shape):
            return f"output {i} has shape {tuple(o.shape)}, expected {tuple(r.shape)}"
        if o.dtype != r.dtype:
            return f"output {i} has dtype {o.dtype}, expected {r.dtype}"
    want = torch.device(device).type
    for i, d in enumerate(devices):
        if torch.device(d).type != want:
            return f"output {i} is on {d}, expected {device}"
    return None


def compare(out: list[torch.Tensor], ref: list[torch.Tensor], devices: list[str], device: str,
            policy: Any, override: dict[str, float] | None = None,
            budget: list[torch.Tensor | None] | None = None) -> Comparison:
    """``budget`` (optional, per output) is |float32 reference - float64 reference|: where the reference's own
    rounding is large (ill-conditioned inputs), an honest kernel that sums in another order may differ by a few
    times as much, so each element may also differ by 4 x (its budget + the budget's RMS) + the largest budget."""
    bad = _structure_problem(out, ref, devices, device)
    if bad:
        return Comparison(False, bad, math.inf, math.inf, math.inf, structural=True)
    worst_abs = worst_rel = worst_fro = 0.0
    failure = ""
    for i, (o, r) in enumerate(zip(out, ref)):
        b = budget[i] if budget is not None and i < len(budget) else None
        # on the reference's device: float64 over a GPU-sized output is seconds on a CPU
        r = r.detach()
        o = o.detach().to(r.device)
        if not r.is_floating_point() and not r.is_complex():  # integers and booleans: exact
            if not torch.equal(o, r):
                n = int((o != r).sum())
                failure = failure or f"output {i}: {n} of {r.numel()} elements differ (exact match required)"
                worst_abs = math.inf
            continue
        if r.is_complex():
            r, o = torch.view_as_real(r.resolve_conj()), torch.view_as_real(o.resolve_conj())
        tol = tolerance_for(r.dtype, policy, override)
        # float32 is exact enough for the elementwise test (the difference of two close floats is exact) and a
        # quarter of float64's memory traffic; norms accumulate in float64
        work = torch.float64 if r.dtype == torch.float64 else torch.float32
        of, rf = o.to(work), r.to(work)
        r_fin, o_fin = torch.isfinite(rf), torch.isfinite(of)
        if not bool(r_fin.all()) or not bool(o_fin.all()):
            special_bad = (o_fin != r_fin) | (~r_fin & ~((of == rf) | (torch.isnan(of) & torch.isnan(rf))))
            if bool(special_bad.any()):
                n = int(special_bad.sum())
                failure = failure or (f"output {i}: {n} elements are NaN or Inf where the reference is not "
                                      "(or differ there)")
                worst_abs = math.inf
                continue
            of, rf = of[r_fin], rf[r_fin]
            if b is not None:
                b = b.to(r_fin.device)[r_fin]
        if rf.numel() == 0:
            continue
        d = (of - rf).abs_()
        ref_abs = rf.abs()
        ref_norm = float(torch.linalg.vector_norm(rf, dtype=torch.float64))
        d_norm = float(torch.linalg.vector_norm(d, dtype=torch.float64))
        scale = max(1.0, ref_norm / math.sqrt(rf.numel()))
        allowed = tol.atol * scale + tol.rtol * ref_abs
        b_norm = 0.0
        if b is not None:
            b = b.to(d.device).reshape(d.shape).to(work)
            b_norm = float(torch.linalg.vector_norm(b, dtype=torch.float64))
            # per element: its own rounding, the typical rounding, and the worst rounding anywhere (an element near
            # a sigmoid's or softmax's switch point may be rounded little in the reference and more in another order)
            allowed = allowed + 4 * (b + b_norm / math.sqrt(b.numel())) + b.max()
        over = d > allowed
        max_abs = float(d.max())
        max_rel = float((d / ref_abs.clamp_min_(tol.atol)).max())
        fro = d_norm / ref_norm if ref_norm > 0 else (0.0 if d_norm == 0 else math.inf)
        # the bound is judged against at least atol per element, so an all-zero reference does not fail noise
        fro_judged = max(0.0, d_norm - 4 * b_norm) / max(ref_norm, tol.atol * math.sqrt(rf.numel()))
        worst_abs, worst_rel, worst_fro = max(worst_abs, max_abs), max(worst_rel, max_rel), max(worst_fro, fro)
        if bool(over.any()):
            failure = failure or (f"output {i}: {int(over.sum())} of {rf.numel()} elements outside tolerance "
                                  f"(max abs err {max_abs:.3g}, atol {tol.atol:g}, rtol {tol.rtol:g})")
        elif fro_judged > tol.fro:
            failure = failure or (f"output {i}: relative Frobenius error {fro:.3g} over the bound {tol.fro:g}")
    return Comparison(not failure, failure, worst_abs, worst_rel, worst_fro)


def inputs_unchanged(before: list[Any], after: list[Any], digests: Any = None,
                     own: list[list[int] | None] | None = None) -> str | None:
    """None when every input tensor is bit-for-bit what it was before the call, else which one changed.

    ``after`` holds the child's inputs after the call, each sent back whole, or, for an input above
    ``digest.DIGEST_MIN_BYTES``, as a placeholder. For those, ``digests`` is the child's digest of each input under
    a key the parent sent after the call's reply, and ``own`` the parent's digest of its own copy under the same key
    (``digest.input_digests``). A small input must come back whole: its comparison stays exact."""
    if not isinstance(after, list) or len(after) != len(before):
        return "the number of inputs changed"
    for i, (b, a) in enumerate(zip(before, after)):
        if not isinstance(b, torch.Tensor):
            continue
        if digest.is_placeholder(a) and digest.digested(b):
            if a.get("shape") != list(b.shape) or a.get("dtype") != str(b.dtype):
                return f"input {i} changed shape or type"
            theirs = digests[i] if type(digests) is list and i < len(digests) else None
            mine = own[i] if own is not None and i < len(own) else None
            # what the child sent is checked for plain ints before comparing: a tensor would compare elementwise
            if (mine is None or type(theirs) is not list or any(type(v) is not int for v in theirs)
                    or theirs != mine):
                return f"input {i} was modified in place"
            continue
        if not isinstance(a, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype:
            return f"input {i} changed shape or type"
        bb = b.detach().contiguous().reshape(-1).view(torch.uint8)
        ab = a.detach().to(b.device).contiguous().reshape(-1).view(torch.uint8)
        if not torch.equal(bb, ab):
            return f"input {i} was modified in place"
    return None
