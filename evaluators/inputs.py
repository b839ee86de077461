"""Fresh inputs from a seed, domain probes, and memory poisoning.

The parent and the child both build a call's inputs from the same seed with the problem's own ``get_inputs``, so
the child can get fresh inputs for every timed call without the reference ever running in the child. Identical
seeds give identical tensors on the same device and torch version; anything the candidate does to disturb that
shows up as a mismatch.

Seeding is process-wide (``torch.manual_seed`` sets the global generators), and an evaluator with several verify
slots builds inputs from several threads at once, so the seeding and every draw from the global generators hold
``SEEDED``: without it, one thread's draws interleave with another's, and the parent's inputs differ from the
child's (honest candidates rejected as ``input_mutated`` or ``mismatch``).
"""
from __future__ import annotations

import threading
import types
from typing import Any

import torch

from evaluators.policy import PROBES

SEEDED = threading.RLock()     # held around torch.manual_seed and the draws that follow it


def _floating(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point()


def _probe(name: str, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=g, device=x.device, dtype=torch.float32).to(x.dtype)
    if name == "scaled_normal":
        return noise * 10
    if name == "large_magnitude":
        return noise * 1000
    if name == "negative":
        return -x.abs() - noise.abs()
    if name == "mixed_sign":
        sign = torch.where(torch.rand(x.shape, generator=g, device=x.device) < 0.5, -1.0, 1.0).to(x.dtype)
        return x * sign
    raise ValueError(f"unknown probe {name!r}; valid: {', '.join(PROBES)}")


def make_inputs(problem: types.ModuleType, seed: int, device: str, probe: str | None = None) -> list[Any]:
    """``get_inputs()`` under ``seed`` on ``device``; with ``probe``, float inputs are redrawn from that wider
    distribution (integer inputs such as indices keep their domain)."""
    with SEEDED:
        torch.manual_seed(seed)
        with torch.device(device):
            inputs = list(problem.get_inputs())
    out = []
    for x in inputs:
        if isinstance(x, torch.Tensor):
            x = x.to(device)
        out.append(x)
    if probe is not None:
        g = torch.Generator(device=device).manual_seed(seed ^ 0x5EED)
        out = [_probe(probe, x, g) if _floating(x) else x for x in out]
    return out


def poison(device: str, nbytes: int, value: float) -> None:
    """Fill ``nbytes`` of memory with ``value`` and free it, so that an allocation that is read before it is
    written (``torch.empty``) sees poison rather than a lucky earlier result."""
    n = max(1024, nbytes // 4)
    t = torch.empty(n, dtype=torch.float32, device=device)
    t.fill_(value)
    del t


def flatten_outputs(out: Any) -> tuple[list[Any], str | None]:
    """Outputs as a flat list, or a reason why their structure is not allowed."""
    if isinstance(out, (tuple, list)):
        items = list(out)
    else:
        items = [out]
    for i, t in enumerate(items):
        if type(t) is not torch.Tensor:
            return items, f"output {i} is a {type(t).__module__}.{type(t).__name__}, not a plain torch.Tensor"
        if t.layout != torch.strided:
            return items, f"output {i} has layout {t.layout}; return a dense strided tensor"
    return items, None


def nbytes(tensors: list[Any]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
