"""Running a generated candidate the way the evaluator does, in this process (our own generated code only)."""
from __future__ import annotations

import hashlib
import importlib.util
import tempfile
import types
from pathlib import Path

import torch


_SOURCES = tempfile.TemporaryDirectory(prefix="ks-harness-")


def load_module(source: str, name: str = "_ks_candidate") -> types.ModuleType:
    """Import ``source`` from a file, as the evaluator's child does (Triton reads a kernel's source from its file)."""
    path = Path(_SOURCES.name) / f"{name}_{hashlib.sha256(source.encode()).hexdigest()[:12]}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_pair(problem_source: str, candidate_source: str, init_args=None, seed: int = 0):
    """(reference, candidate, problem module) built as the evaluator does: seed, construct, load the state dict."""
    prob = load_module(problem_source, "_ks_problem")
    cand = load_module(candidate_source)
    args = list(init_args if init_args is not None else prob.get_init_inputs())
    torch.manual_seed(seed)
    ref = prob.Model(*args)
    torch.manual_seed(seed)
    new = cand.ModelNew(*args)
    ref_sd, new_sd = ref.state_dict(), new.state_dict()
    if ref_sd.keys() == new_sd.keys() and all(ref_sd[k].shape == new_sd[k].shape for k in ref_sd):
        new.load_state_dict(ref_sd, strict=True)
    return ref, new, prob


def max_violation(ref_out, new_out, atol: float = 1e-4, rtol: float = 1e-4) -> float:
    """How far outside the verifier's float32 tolerance the candidate is (<= 0: within it).

    Mirrors the verifier: ``|out - ref| <= atol * max(1, rms(ref)) + rtol * |ref|`` in float64, NaN/Inf only where
    the reference has them, and a relative Frobenius error under ``10 * rtol``.
    """
    if isinstance(ref_out, (tuple, list)):
        assert isinstance(new_out, (tuple, list)) and len(ref_out) == len(new_out)
        return max(max_violation(a, b, atol, rtol) for a, b in zip(ref_out, new_out))
    assert ref_out.shape == new_out.shape, (ref_out.shape, new_out.shape)
    assert ref_out.dtype == new_out.dtype, (ref_out.dtype, new_out.dtype)
    r, o = ref_out.detach().double(), new_out.detach().double()
    special = torch.isnan(r) | torch.isinf(r)
    if bool(((torch.isnan(o) | torch.isinf(o)) != special).any()) or bool((o[torch.isinf(r)] != r[torch.isinf(r)]).any()):
        return float("inf")
    r, o = r[~special], o[~special]
    if r.numel() == 0:
        return -1.0
    d = (o - r).abs()
    allowed = atol * max(1.0, float(r.pow(2).mean().sqrt())) + rtol * r.abs()
    worst = float((d - allowed).max())
    norm = float(r.norm())
    fro = float(d.norm()) / norm if norm > 0 else (0.0 if float(d.norm()) == 0 else float("inf"))
    return max(worst, fro - 10 * rtol)


def check_exact(ref, new, inputs, atol: float = 1e-4, rtol: float = 1e-4) -> float:
    with torch.no_grad():
        a = ref(*inputs)
        b = new(*inputs)
    return max_violation(a, b, atol, rtol)
