"""The population's Arrow schema (versioned) and how one evaluation becomes one row.

One row is one evaluation of one candidate of one problem on one hardware class. JSON-valued columns (``params``,
``probe_verdicts``, ``profile``, ``provenance``, ``policy``) are strings so that every Parquet reader reads them.
The version lives in the schema metadata (``kernelswarm.schema_version``); ``conform`` brings older parts up to it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from evaluators.result import EvalResult, TimeStats

SCHEMA_VERSION = 2      # 2: the scheduler's columns (device_id ... stage_s); version-1 parts read with them null
VERSION_KEY = b"kernelswarm.schema_version"

_STR, _F64, _I32 = pa.string(), pa.float64(), pa.int32()
_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    # identity and lineage
    ("campaign", _STR), ("problem_id", _STR), ("problem_path", _STR), ("level", _STR), ("scale", _STR),
    ("candidate_id", _STR), ("parent_ids", pa.list_(_STR)), ("generation", _I32), ("island", _STR),
    ("proposer", _STR), ("backend", _STR),
    # the candidate's genome
    ("source", pa.large_string()), ("params", _STR),
    # where it ran
    ("hardware", _STR), ("device", _STR), ("torch_device", _STR), ("node_id", _STR),
    # the verdict
    ("status", _STR), ("reason", _STR), ("max_abs_err", _F64), ("max_rel_err", _F64), ("rel_fro_err", _F64),
    ("probe_verdicts", _STR), ("warnings", pa.list_(_STR)), ("static_flags", pa.list_(_STR)),
    # times
    ("candidate_ms", _F64), ("candidate_ci_low_ms", _F64), ("candidate_ci_high_ms", _F64),
    ("candidate_count", _I32), ("eager_ms", _F64), ("compile_ms", _F64),
    ("speedup", _F64), ("speedup_ci_low", _F64), ("speedup_ci_high", _F64), ("roofline_fraction", _F64),
    # the rest
    ("profile", _STR), ("compile_seconds", _F64), ("created_at", pa.timestamp("us", tz="UTC")),
    ("provenance", _STR), ("policy", _STR),
    ("eval_key", _STR),
    # the scheduler's account of where the time went (version 2)
    ("device_id", _STR), ("started_at", pa.timestamp("us", tz="UTC")), ("ended_at", pa.timestamp("us", tz="UTC")),
    ("queue_s", _F64), ("precheck_s", _F64), ("stage_s", _STR),
)
_NOT_NULL = {"campaign", "problem_id", "candidate_id", "hardware", "status", "eval_key", "created_at"}

SCHEMA = pa.schema([pa.field(n, t, nullable=n not in _NOT_NULL) for n, t in _FIELDS],
                   metadata={VERSION_KEY: str(SCHEMA_VERSION).encode()})
COLUMNS = tuple(SCHEMA.names)


class SchemaError(ValueError):
    """A table that cannot be brought to the current schema."""


class CandidateLike(Protocol):
    """What ``row_from_result`` needs of a candidate; ``proposers.base.Candidate`` is one."""

    source: str
    params: Mapping[str, Any]
    parent_ids: Sequence[str]
    proposer: str
    backend: str
    hardware: str

    @property
    def id(self) -> str: ...


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a candidate sits in a campaign and where it was evaluated; the rest of a row comes from elsewhere."""

    campaign: str
    problem_path: str
    generation: int = 0
    island: str = ""
    node_id: str = ""
    scale: str = "default"


def eval_key(problem_id: str, candidate_id: str, hardware: str) -> str:
    """The unique key of one evaluation. The problem is part of it: one source may serve two problems."""
    return f"{problem_id}/{candidate_id}@{hardware}"


def level_of(problem_path: str | Path) -> str | None:
    """``level1`` for ``.../level1/x.py``; None when the parent folder is not a level."""
    parent = Path(problem_path).parent.name
    return parent if parent.startswith("level") else None


def row_from_result(result: EvalResult, candidate: CandidateLike, where: Placement, *,
                    created_at: dt.datetime | None = None) -> dict[str, Any]:
    """One population row (a dict keyed by ``COLUMNS``) from an evaluation's result and its candidate."""
    problem_id = Path(where.problem_path).stem
    c: TimeStats | None = result.candidate
    ci = result.speedup_ci or (None, None)
    params = candidate.params.to_dict() if hasattr(candidate.params, "to_dict") else dict(candidate.params)
    row = {
        "campaign": where.campaign, "problem_id": problem_id, "problem_path": str(where.problem_path),
        "level": level_of(where.problem_path), "scale": where.scale,
        "candidate_id": candidate.id, "parent_ids": list(candidate.parent_ids), "generation": where.generation,
        "island": where.island, "proposer": candidate.proposer, "backend": candidate.backend,
        "source": candidate.source, "params": json.dumps(params, sort_keys=True),
        "hardware": candidate.hardware, "device": result.device_name or result.device,
        "torch_device": result.device, "node_id": where.node_id,
        "status": result.status.value, "reason": result.reason,
        "max_abs_err": result.max_abs_err, "max_rel_err": result.max_rel_err, "rel_fro_err": result.rel_fro_err,
        "probe_verdicts": json.dumps([list(p) for p in result.probe_verdicts]),
        "warnings": list(result.warnings), "static_flags": list(result.static_flags),
        "candidate_ms": c.median_ms if c else None, "candidate_ci_low_ms": c.ci_low_ms if c else None,
        "candidate_ci_high_ms": c.ci_high_ms if c else None, "candidate_count": c.count if c else None,
        "eager_ms": result.eager.median_ms if result.eager else None,
        "compile_ms": result.compile.median_ms if result.compile else None,
        "speedup": result.speedup, "speedup_ci_low": ci[0], "speedup_ci_high": ci[1],
        "roofline_fraction": _float_or_none(result.profile.get("roofline_fraction")),
        "profile": json.dumps(result.profile, sort_keys=True, default=str),
        "compile_seconds": result.compile_seconds,
        "created_at": created_at or dt.datetime.now(dt.timezone.utc),
        "provenance": json.dumps(_provenance(result), sort_keys=True, default=str),
        "policy": json.dumps(result.policy, sort_keys=True, default=str),
        "eval_key": eval_key(problem_id, candidate.id, candidate.hardware),
        **_schedule_columns(result),
    }
    return row


def _provenance(result: EvalResult) -> dict[str, Any]:
    """The evaluator's provenance, with the baseline record the speedup was paired against under ``baseline``
    (its key, when and where it was measured, and whether this evaluation read it from the node's cache)."""
    record = (result.timing or {}).get("baseline_record")
    return {**result.provenance, "baseline": record} if record else dict(result.provenance)


def _schedule_columns(result: EvalResult) -> dict[str, Any]:
    """The scheduler's stamp (``provenance["schedule"]``) and the evaluator's seconds per stage, as columns."""
    sched = result.provenance.get("schedule") or {}

    def at(name: str) -> dt.datetime | None:
        v = sched.get(name)
        return None if v is None else dt.datetime.fromtimestamp(float(v), dt.timezone.utc)

    stages = getattr(result, "stage_s", None)
    return {"device_id": sched.get("device_id"), "started_at": at("started_at"), "ended_at": at("ended_at"),
            "queue_s": _float_or_none(sched.get("queue_s")), "precheck_s": _float_or_none(sched.get("precheck_s")),
            "stage_s": json.dumps(dict(stages), sort_keys=True) if stages else None}


def _float_or_none(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def rows_to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts keyed by ``COLUMNS``) as a table of ``SCHEMA``; a missing nullable column is null."""
    missing = [n for n in _NOT_NULL if any(r.get(n) is None for r in rows)]
    if missing:
        raise SchemaError(f"rows lack required columns: {', '.join(sorted(missing))}")
    unknown = {k for r in rows for k in r} - set(COLUMNS)
    if unknown:
        raise SchemaError(f"unknown columns: {', '.join(sorted(unknown))}")
    return pa.Table.from_pylist([dict(r) for r in rows], schema=SCHEMA)


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def conform(table: pa.Table) -> pa.Table:
    """``table`` with exactly ``SCHEMA``'s columns, in order: absent nullable columns become nulls.

    Raises ``SchemaError`` for a part written by a newer schema version, an unknown column or a required column
    that is missing, so that a reader never silently drops data it does not understand.
    """
    meta = table.schema.metadata or {}
    version = int(meta.get(VERSION_KEY, b"1"))
    if version > SCHEMA_VERSION:
        raise SchemaError(f"population schema version {version} is newer than this tool's {SCHEMA_VERSION}; "
                          "upgrade kernelswarm to read it")
    unknown = set(table.column_names) - set(COLUMNS)
    if unknown:
        raise SchemaError(f"unknown population columns: {', '.join(sorted(unknown))}")
    if table.schema == SCHEMA and table.schema.metadata == SCHEMA.metadata:
        return table
    arrays = []
    for f in SCHEMA:
        if f.name in table.column_names:
            arrays.append(table.column(f.name).cast(f.type))
        elif f.nullable:
            arrays.append(pa.nulls(table.num_rows, f.type))
        else:
            raise SchemaError(f"population part lacks the required column {f.name!r}")
    return pa.Table.from_arrays(arrays, schema=SCHEMA)
