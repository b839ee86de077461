"""torch.compile variants: the mode and inductor options are a tunable choice, not a fixed recipe.

Applies to every problem (the reference forward itself is compiled when no graph rewrite comes before it) and
combines with any graph rewrite, which is then compiled as a whole. Modes are expressed as inductor options (the
two cannot be passed together), so a point of ``SPACE`` maps to one options dict.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any


from proposers.base import device_kind

NAME = "compile"

MODE_OPTIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "max-autotune-no-cudagraphs": {"max_autotune": True, "coordinate_descent_tuning": True},
    "max-autotune": {"max_autotune": True, "triton.cudagraphs": True, "coordinate_descent_tuning": True},
    "reduce-overhead": {"triton.cudagraphs": True},
}

# Per device kind: each key is an inductor option or "mode"; the first value is the default.
SPACE: dict[str, dict[str, list[Any]]] = {
    "cpu": {
        "mode": ["default", "max-autotune-no-cudagraphs"],
        "freezing": [False, True],              # weights as constants: oneDNN prepacking, constant folding
        "cpp_wrapper": [False, True],           # C++ launcher: less Python overhead per call
        "epilogue_fusion": [True, False],
    },
    "cuda": {
        "mode": ["default", "max-autotune-no-cudagraphs", "max-autotune", "reduce-overhead"],
        "coordinate_descent_tuning": [False, True],
        "epilogue_fusion": [True, False],
        "freezing": [False, True],
    },
}
SPACE["mps"] = {"mode": ["default"], "freezing": [False, True]}


def options(point: Mapping[str, Any]) -> dict[str, Any]:
    """The inductor options of a point of the space (only values that differ from the defaults)."""
    opts = dict(MODE_OPTIONS[point.get("mode", "default")])
    for key, value in point.items():
        if key == "mode":
            continue
        if key == "epilogue_fusion" and value is True:
            continue
        if value is False and key not in opts:
            continue
        opts[key] = value
    return opts


def variants(hardware: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Distinct option dicts for a hardware class, most promising first (defaults, then one change at a time)."""
    space = SPACE[device_kind(hardware)]
    keys = list(space)
    ordered: list[dict[str, Any]] = []
    base = {k: v[0] for k, v in space.items()}
    points = [base] + [{**base, k: v} for k in keys for v in space[k][1:]]
    points += [dict(zip(keys, combo)) for combo in itertools.product(*space.values())]
    for p in points:
        o = options(p)
        if o not in ordered:
            ordered.append(o)
    return ordered[:limit] if limit else ordered
