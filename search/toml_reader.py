"""A typed reader of TOML tables: every value checked against its dataclass field's annotation and bounds, unknown
keys refused with a suggestion, and every error one line naming the file and the dotted key."""
from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """A campaign file that cannot be used; the message names the file and the key."""


class Reader:
    """Type-checks values of one TOML table and reports errors with the file and dotted key."""

    def __init__(self, file: Path, bounds: typing.Mapping[type, typing.Mapping[str, typing.Mapping[str, Any]]]
                 | None = None):
        self.file = file
        self.base = file.parent
        self.bounds = bounds or {}      # per dataclass, per field: bounds for fields without metadata of their own

    def fail(self, key: str, message: str) -> typing.NoReturn:
        raise ConfigError(f"{self.file}: {key}: {message}")

    @staticmethod
    def dotted(parent: str, name: str) -> str:
        """``parent.name``, the name quoted as TOML would write it when it is not a bare key."""
        return f"{parent}.{toml_key(name)}" if parent else toml_key(name)

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"expected a table [{key}], got {describe(value)}")
        return dict(value)

    def array_of_tables(self, value: Any, key: str) -> list[dict[str, Any]]:
        if isinstance(value, dict):
            self.fail(key, f"expected an array of tables: write [[{key}]] (double brackets), not [{key}]")
        if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
            self.fail(key, f"expected one or more [[{key}]] tables, got {describe(value)}")
        return [dict(v) for v in value]

    def reject_unknown(self, data: dict[str, Any], valid: typing.Iterable[str], key: str) -> None:
        valid = list(valid)
        for name in data:
            dotted = self.dotted(key, name)
            hint = difflib.get_close_matches(name, valid, n=1)
            did_you_mean = f"did you mean '{hint[0]}'? " if hint else ""
            self.fail(dotted, f"unknown key; {did_you_mean}valid keys here: {', '.join(valid)} "
                              "(unknown keys are errors, not ignored)")

    def value(self, value: Any, hint: Any, key: str) -> Any:
        """Check ``value`` against the annotation ``hint`` and convert it (lists to tuples, paths resolved)."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            return self.value(value, inner[0], key)
        if origin is Literal:
            if value not in args:
                self.fail(key, f"expected one of {', '.join(map(repr, args))}, got {value!r}")
            return value
        if origin is tuple:
            if not isinstance(value, list):
                self.fail(key, f"expected a list, e.g. {key.rsplit('.', 1)[-1]} = [...], got {describe(value)}")
            return tuple(self.value(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if hint is Path:
            p = Path(self.value(value, str, key)).expanduser()
            return p if p.is_absolute() else (self.base / p).resolve()
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if hint is float and type(value) is float and math.isnan(value):
            self.fail(key, "expected a number, got nan")
        if hint is int and type(value) is int and not _INT64[0] <= value <= _INT64[1]:
            self.fail(key, f"{clip(str(value))} is out of range; integers are 64-bit (at most {_INT64[1]})")
        if hint is str and type(value) is str and "\x00" in value:
            self.fail(key, "contains a NUL character (\\u0000); remove it")
        if hint in (int, float, str, bool) and (type(value) is hint):
            return value
        if hint in (int, float, bool) and isinstance(value, str):
            self.fail(key, f"expected {_NAMES[hint]}, got {describe(value)}; write it without quotes")
        if hint in (int, float, str, bool):
            self.fail(key, f"expected {_NAMES[hint]}, got {describe(value)}")
        raise TypeError(f"unsupported annotation {hint!r} for {key}")

    def dataclass(self, cls: type, data: Any, key: str, **given: Any) -> Any:
        """Build ``cls`` from a TOML table: every field checked, required ones demanded, unknown keys refused."""
        data = self.table(data, key)
        names = [f.name for f in dataclasses.fields(cls) if f.name not in given]
        self.reject_unknown({k: v for k, v in data.items() if k not in names}, names, key)
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = dict(given)
        for f in dataclasses.fields(cls):
            if f.name in given:
                continue
            dotted = f"{key}.{f.name}"
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    self.fail(dotted, f"missing; add {f.name} = ... to the [{key}] table")
                continue
            kwargs[f.name] = self.value(data.pop(f.name), hints[f.name], dotted)
            self._check_bounds(f.metadata or self.bounds.get(cls, {}).get(f.name, {}), kwargs[f.name], dotted)
        return cls(**kwargs)

    def _check_bounds(self, bounds: typing.Mapping[str, Any], v: Any, key: str) -> None:
        if v is None:
            return
        choices = bounds.get("choices")
        if choices is not None:
            for i, item in enumerate(v):
                if item not in choices:
                    self.fail(f"{key}[{i}]", f"{clip(repr(item))} is not one of {', '.join(map(repr, choices))}")
            if not v and bounds.get("nonempty"):
                self.fail(key, f"must not be empty; choose among {', '.join(map(repr, choices))}")
        low, high = bounds.get("min"), bounds.get("max")
        if low is not None and (v < low or (bounds.get("exclusive") and v == low)):
            self.fail(key, f"must be {'>' if bounds.get('exclusive') else '>='} {low}, got {v!r}")
        if high is not None and v > high:
            self.fail(key, f"must be <= {high}, got {v!r}")


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_INT64 = (-(2**63), 2**63 - 1)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def toml_key(name: str) -> str:
    """A key as TOML writes it: bare, or quoted with escapes, so that a message stays one readable line."""
    return name if _BARE_KEY.match(name) else clip(json.dumps(name))


def describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), "a date or time" if isinstance(value, (dt.date, dt.time))
                                  else type(value).__name__)
    return f"{clip(repr(value))} ({kind})" if not isinstance(value, (dict, list)) else kind
