"""The population's columns are DESIGN.md's, with the agreed names and types, and the schema is versioned."""
import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from popdata import Cand, result, row, source

from evaluators.result import Status
from search.schema import (COLUMNS, SCHEMA, SCHEMA_VERSION, VERSION_KEY, Placement, SchemaError, conform,
                           row_from_result, rows_to_table)

DESIGN_COLUMNS = ["campaign", "problem_id", "candidate_id", "parent_ids", "generation", "proposer", "backend",
                  "source", "params", "hardware", "device", "status", "reason", "max_abs_err", "max_rel_err",
                  "candidate_ms", "eager_ms", "compile_ms", "speedup", "created_at"]
BRIEF_COLUMNS = ["island", "node_id", "rel_fro_err", "probe_verdicts", "candidate_ci_low_ms",
                 "candidate_ci_high_ms", "candidate_count", "speedup_ci_low", "speedup_ci_high",
                 "roofline_fraction", "profile", "compile_seconds", "provenance", "eval_key", "level"]


def test_every_agreed_column_is_present() -> None:
    assert set(DESIGN_COLUMNS + BRIEF_COLUMNS) <= set(COLUMNS)
    assert SCHEMA.field("parent_ids").type == pa.list_(pa.string())
    assert SCHEMA.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert SCHEMA.field("speedup").type == pa.float64()
    assert SCHEMA.metadata[VERSION_KEY] == str(SCHEMA_VERSION).encode()


def test_row_from_result_fills_the_columns() -> None:
    cand = Cand(source=source("x"), params={"tile": 64}, parent_ids=("p1",), hardware="h100")
    r = row_from_result(result(speedup=2.0), cand,
                        Placement("camp", "/x/level2/fused.py", generation=3, island="i", node_id="n"),
                        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    assert r["problem_id"] == "fused" and r["level"] == "level2" and r["hardware"] == "h100"
    assert r["candidate_id"] == cand.id and r["parent_ids"] == ["p1"] and r["generation"] == 3
    assert json.loads(r["params"]) == {"tile": 64}
    assert r["speedup"] == 2.0 and r["speedup_ci_low"] == pytest.approx(1.8)
    assert r["candidate_ms"] == 1.0 and r["eager_ms"] == 2.0 and r["compile_ms"] == 2.2
    assert r["roofline_fraction"] == 0.25 and r["device"] == "Test CPU" and r["torch_device"] == "cpu"
    assert r["eval_key"] == f"fused/{cand.id}@h100"
    assert rows_to_table([r]).schema == SCHEMA


def test_a_failed_evaluation_has_nulls_not_sentinels() -> None:
    r = row("bad", status=Status.TIMEOUT, speedup=None, err=None)
    t = rows_to_table([r])
    for col in ("speedup", "candidate_ms", "eager_ms", "max_abs_err", "candidate_count"):
        assert t.column(col).null_count == 1, col


def test_parts_of_an_older_layout_are_filled_with_nulls(tmp_path: Path) -> None:
    t = rows_to_table([row("a")]).drop_columns(["roofline_fraction", "policy"])
    pq.write_table(t, tmp_path / "old.parquet")
    c = conform(pq.read_table(tmp_path / "old.parquet"))
    assert c.schema == SCHEMA and c.column("roofline_fraction").null_count == 1


def test_a_newer_schema_version_is_refused() -> None:
    t = rows_to_table([row("a")])
    newer = t.replace_schema_metadata({VERSION_KEY: str(SCHEMA_VERSION + 1).encode()})
    with pytest.raises(SchemaError, match="newer"):
        conform(newer)


def test_rows_without_required_columns_are_refused() -> None:
    r = row("a")
    del r["eval_key"]
    with pytest.raises(SchemaError, match="eval_key"):
        rows_to_table([r])
