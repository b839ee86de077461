"""Hypothesis strategies for campaign files: raw bytes, and TOML documents built from a valid campaign with keys
added, removed or given values of the wrong type (nested tables, huge numbers, NaN, dates, any unicode)."""
from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from hypothesis import strategies as st

SECTIONS = ("campaign", "budget", "problems", "targets", "proposers", "verify", "sandbox", "timing", "evolution")
KNOWN_KEYS = ("name", "out", "seed", "max_evaluations", "max_minutes", "max_generations", "max_tokens",
              "max_cost_usd", "path", "scale", "levels", "hardware", "wait_s", "kind", "per_generation",
              "compile_limit", "sampler", "objective", "templates", "dir", "trials", "probes", "atol_fp32",
              "static", "timeout_s", "memory_mb", "max_processes", "max_file_mb", "seed", "extra_writable",
              "confine_writes", "warmup", "min_samples", "ci_target", "baselines", "rounds",
              "population_per_island", "parents", "migration_every", "migrants", "near_duplicate", "wall_clock_s",
              "cpu_time_s")


def toml_string(s: str) -> str:
    # JSON's escapes are TOML's, except that TOML also wants DEL escaped
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_string(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_document(doc: dict[str, Any]) -> str:
    """One line per top-level key; tables are inline, arrays of tables are arrays of inline tables."""
    return "\n".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in doc.items()) + "\n"


scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63), 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
    st.sampled_from(["", "cpu", "rewrites", "optuna", "files", "../x", "/", "\x00", "[/]", "[bold", "*.py",
                     "tpe", "reject", "~", "é" * 3]),
    st.datetimes(),
    st.dates(),
    st.times(),
)
keys = st.one_of(st.sampled_from(SECTIONS + KNOWN_KEYS), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
