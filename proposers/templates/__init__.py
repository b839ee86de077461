"""Kernel templates with a declared parameter space, bound to the problems they implement.

A template module defines ``FAMILY``, ``BACKEND``, ``DEVICES``, ``bind(traced) -> dict | None`` (what the template
implements for this problem, or None when it does not fit), ``space(binding, cores) -> dict[str, list]`` and
``render(problem, binding, point, build_dir) -> str``. The rendered candidate carries ``SPACE = {...}``: the tuning
manifest of the point it was built from. An illegal point raises ``InvalidPoint``; the tuner prunes it.
"""
from __future__ import annotations

import importlib
import types

from proposers.rewrites.problem import Problem, Traced, trace_problem

TEMPLATES: dict[str, str] = {
    "cpp_rows": "proposers.templates.cpp_rows",
    "triton_rows": "proposers.templates.triton_rows",
}


class InvalidPoint(ValueError):
    """A point of a template's space that cannot be rendered (the search should prune it)."""


def template_module(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(TEMPLATES[name])
    except KeyError:
        raise ValueError(f"unknown template {name!r}; valid: {', '.join(sorted(TEMPLATES))}") from None


def bindings(problem: Problem, device: str) -> list[tuple[str, dict]]:
    """(template name, binding) for every template that implements ``problem`` on a ``device`` kind."""
    traced: Traced | None = trace_problem(problem)
    if traced is None:
        return []
    out = []
    for name in TEMPLATES:
        mod = template_module(name)
        if device not in mod.DEVICES:
            continue
        b = mod.bind(traced)
        if b is not None:
            out.append((name, b))
    return out


__all__ = ["InvalidPoint", "TEMPLATES", "bindings", "template_module"]
