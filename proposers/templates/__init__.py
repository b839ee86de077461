"""Kernel templates with a declared parameter space, bound to the problems they implement.

A template module defines ``FAMILY``, ``BACKEND``, ``DEVICES``, ``bind(traced) -> dict | None`` (what the template
implements for this problem, or None when it does not fit), ``space(binding, cores) -> dict[str, Dim]`` and
``render(problem, binding, point, build_dir) -> str``. The rendered candidate carries ``SPACE = {...}``: the tuning
manifest of the point it was built from. An illegal point raises ``InvalidPoint``; the tuner prunes it.

A dimension of a space is ordered where its parameter is: ``IntRange`` (a step or log scale), ``Pow2`` (powers of
two, searched as their exponent, so that a sampler sees 64 between 32 and 128), or ``Choice`` (unordered values). A
plain list is a ``Choice``.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import types
from typing import Any

from proposers.rewrites.problem import Problem, Traced, trace_problem

TEMPLATES: dict[str, str] = {
    "cpp_rows": "proposers.templates.cpp_rows",
    "triton_rows": "proposers.templates.triton_rows",
    "triton_fused": "proposers.templates.triton_fused",
}


class InvalidPoint(ValueError):
    """A point of a template's space that cannot be rendered (the search should prune it)."""


@dataclasses.dataclass(frozen=True)
class IntRange:
    """Integers ``low..high`` (inclusive) in steps of ``step``, or on a log scale."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))

    def __repr__(self) -> str:
        return f"int[{self.low}..{self.high}{', log' if self.log else ''}{', step ' + str(self.step) if self.step != 1 else ''}]"


@dataclasses.dataclass(frozen=True)
class Pow2:
    """Powers of two from ``low`` to ``high``; a sampler searches the exponent, an ordered integer."""

    low: int
    high: int

    def __post_init__(self) -> None:
        for v in (self.low, self.high):
            if v < 1 or v & (v - 1):
                raise ValueError(f"Pow2 bounds must be powers of two, got {v}")

    @property
    def exponents(self) -> tuple[int, int]:
        return int(math.log2(self.low)), int(math.log2(self.high))

    def values(self) -> list[int]:
        lo, hi = self.exponents
        return [2 ** e for e in range(lo, hi + 1)]

    def __repr__(self) -> str:
        return f"pow2[{self.low}..{self.high}]"


@dataclasses.dataclass(frozen=True)
class Choice:
    """Unordered values (strings, booleans, alternatives that no order relates)."""

    options: tuple

    def values(self) -> list[Any]:
        return list(self.options)

    def __repr__(self) -> str:
        return f"one of {list(self.options)!r}"


Dim = IntRange | Pow2 | Choice


def manifest(space: dict[str, Any]) -> dict[str, str]:
    """A space as plain strings (``"pow2[16..256]"``), for the ``SPACE = {...}`` line of a rendered candidate."""
    return {k: repr(as_dim(v)) for k, v in space.items()}


def as_dim(d: Any) -> Dim:
    """A space entry as a dimension (a plain list or tuple is a ``Choice``)."""
    if isinstance(d, (IntRange, Pow2, Choice)):
        return d
    if isinstance(d, (list, tuple)):
        return Choice(tuple(d))
    raise TypeError(f"a space dimension is IntRange, Pow2, Choice or a list, got {type(d).__name__}")


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


__all__ = ["Choice", "Dim", "IntRange", "InvalidPoint", "Pow2", "TEMPLATES", "as_dim", "bindings", "manifest",
           "template_module"]
