"""Throughput figures follow their definitions: busy time is the union of a device's evaluation intervals (verify
slots that overlap count once), per device-hour counts evaluations that reached a device, stages add up; the
report and a journal written before the scheduler's columns read them."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pytest
from popdata import Cand, result, source

from search.population import Population, read_population
from search.report import report
from search.schema import SCHEMA, VERSION_KEY, Placement, conform, row_from_result
from search.throughput import Throughput

T = 1_800_000_000.0


def _row(tag: str, device: str | None, start: float | None, end: float | None, queue: float = 0.0,
         stages: dict | None = None) -> dict:
    sched = {"device_id": device, "started_at": start, "ended_at": end, "queue_s": queue, "precheck_s": 0.5}
    res = dataclasses.replace(result(), provenance={"schedule": sched}, stage_s=stages or {})
    return row_from_result(res, Cand(source(tag)), Placement(campaign="c", problem_path="p/1_add.py"))


def test_busy_time_is_the_union_and_rates_count_devices_and_wall_time() -> None:
    tp = Throughput()
    tp.add(_row("a", "cpu:n:0", T, T + 10, queue=1.0, stages={"verify": 2.0, "time": 6.0, "timed_calls": 4.5}))
    tp.add(_row("b", "cpu:n:0", T + 5, T + 15, queue=3.0, stages={"verify": 4.0}))   # overlaps a: 15 s busy
    tp.add(_row("c", "cpu:n:1", T, T + 30, stages={"timed_calls": 7.5}))
    tp.add(_row("d", None, None, None))                       # a precheck verdict: no device time
    s = tp.summary(wall_s=60.0)
    assert s["devices"]["cpu:n:0"]["busy_s"] == 15.0 and s["devices"]["cpu:n:0"]["busy_fraction"] == 0.25
    assert s["devices"]["cpu:n:1"]["busy_fraction"] == 0.5
    assert s["busy_fraction"] == pytest.approx(0.375)
    # the devices' own seconds in timed calls over their wall time: 12 s of 2 devices x 60 s
    assert s["timed_fraction"] == pytest.approx(0.1)
    assert s["evaluations"] == 4 and s["device_evaluations"] == 3
    assert s["evaluations_per_device_hour"] == pytest.approx(3 * 3600 / (2 * 60))
    assert s["stages"]["queue"] == {"total_s": 4.0, "mean_s": 1.0, "count": 4}
    assert s["stages"]["verify"]["total_s"] == 6.0 and s["stages"]["device"]["total_s"] == 50.0
    # a third device of the class that never got work is idle: it lowers both rates
    s3 = tp.summary(wall_s=60.0, capacity={"cpu": 3})
    assert s3["idle_devices"] == 1 and s3["busy_fraction"] == pytest.approx(0.25)
    assert s3["evaluations_per_device_hour"] == pytest.approx(3 * 3600 / (3 * 60))
    assert tp.summary(wall_s=60.0, capacity={"cpu": 1})["idle_devices"] == 0


def test_the_report_shows_throughput_and_old_journals_still_read(tmp_path: Path) -> None:
    rows = [_row("a", "cpu:n:0", T, T + 10), _row("b", "cpu:n:0", T + 10, T + 20)]
    with Population.open(tmp_path, writer=True) as pop:
        pop.append(rows)
        # a part written by schema version 1: none of the scheduler's columns
        old_cols = [f for f in SCHEMA if f.name not in ("device_id", "started_at", "ended_at", "queue_s",
                                                           "precheck_s", "stage_s")]
        v1 = pa.schema(old_cols, metadata={VERSION_KEY: b"1"})
        old = pa.Table.from_pylist([{k: v for k, v in _row("old", None, None, None).items() if k in v1.names}],
                                   schema=v1)
        pop.append(conform(old))
    table = read_population(tmp_path)
    assert table.num_rows == 3 and table.column("device_id").to_pylist()[2] is None
    md = report(tmp_path).markdown.read_text()
    assert "## Throughput" in md and "| cpu:n:0 | cpu | 2 | 20 | 1 |" in md
