"""Throughput: evaluations per device-hour, each device's busy fraction, and where the time went per stage.

Built from the population's rows (their ``device_id``, ``started_at``, ``ended_at``, ``queue_s``, ``precheck_s``
and ``stage_s`` columns, stamped by the scheduler and the evaluator), so the live view, ``kswarm status --json``
and the report read the same figures, and a resumed campaign carries on with its earlier ones. Wall time is the
campaign's own elapsed time (the checkpoint's ``elapsed_s``, which spans resumes).

A device's busy time is the union of the intervals in which it ran candidate work (the baselines measured inside
an evaluation included); overlapping verify slots count once. That time is mostly host work on the device's
behalf (builds, compiles, checks), so the figures also give ``timed_fraction``: the seconds of timed calls, by the
device's own clock, over the devices' wall time, a floor on the time the device itself computed.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import pyarrow as pa


@dataclasses.dataclass(frozen=True)
class Span:
    """One evaluation on one device, in Unix seconds."""

    device: str
    hardware: str
    start: float
    end: float


def _epoch(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)).timestamp()
    return float(v)


def _union(spans: list[Span]) -> float:
    total, cur_start, cur_end = 0.0, None, None
    for s in sorted(spans, key=lambda s: s.start):
        if cur_end is None or s.start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = s.start, s.end
        else:
            cur_end = max(cur_end, s.end)
    return total + ((cur_end - cur_start) if cur_end is not None else 0.0)


class Throughput:
    """Accumulates rows as they are recorded; ``summary(wall_s)`` gives the figures."""

    def __init__(self) -> None:
        self.evaluations = 0
        self.spans: dict[str, list[Span]] = defaultdict(list)
        self.stage_s: dict[str, float] = defaultdict(float)
        self.stage_n: dict[str, int] = defaultdict(int)

    @classmethod
    def from_table(cls, table: pa.Table) -> "Throughput":
        out = cls()
        names = set(table.column_names)
        cols = [c for c in ("device_id", "hardware", "started_at", "ended_at", "queue_s", "precheck_s", "stage_s")
                if c in names]
        for row in table.select(cols).to_pylist():
            out.add(row)
        return out

    def add(self, row: Mapping[str, Any]) -> None:
        """One population row (a dict); rows from before the scheduler stamped them count as evaluations only."""
        self.evaluations += 1
        device, start, end = row.get("device_id"), _epoch(row.get("started_at")), _epoch(row.get("ended_at"))
        if device and start is not None and end is not None and end >= start:
            self.spans[device].append(Span(device, row.get("hardware") or "", start, end))
            self._stage("device", end - start)
        for name in ("queue_s", "precheck_s"):
            if row.get(name) is not None:
                self._stage(name[:-2], float(row[name]))
        stages = row.get("stage_s")
        if isinstance(stages, str) and stages:
            stages = json.loads(stages)
        for name, secs in (stages or {}).items():
            if isinstance(secs, (int, float)):
                self._stage(name, float(secs))

    def _stage(self, name: str, secs: float) -> None:
        self.stage_s[name] += secs
        self.stage_n[name] += 1

    def summary(self, wall_s: float, capacity: Mapping[str, int] | None = None) -> dict[str, Any]:
        """``evaluations_per_device_hour`` counts evaluations that reached a device over the devices' wall time;
        ``busy_fraction`` is the mean over devices; ``stages`` gives total and mean seconds per stage (``queue``:
        waiting for a device; ``precheck``: cheap checks on a CPU worker; ``device``: on the device in all; and
        the evaluator's own stages, e.g. ``build``, ``verify``, ``time``, ``baseline``, where it reports them).
        The devices are those that ran an evaluation, or ``capacity`` (devices per class) where it names more:
        a device that never got work counts as idle (``idle_devices``)."""
        wall = max(wall_s, 1e-9)
        devices = {}
        for dev, spans in sorted(self.spans.items()):
            busy = _union(spans)
            devices[dev] = {"hardware": spans[0].hardware, "evaluations": len(spans), "busy_s": round(busy, 3),
                            "busy_fraction": round(min(1.0, busy / wall), 4),
                            "evaluations_per_hour": round(len(spans) * 3600 / wall, 2)}
        seen: dict[str, int] = defaultdict(int)
        for d in devices.values():
            seen[d["hardware"]] += 1
        idle = sum(max(0, n - seen.get(cls, 0)) for cls, n in (capacity or {}).items())
        n_dev = len(devices) + idle
        on_device = sum(d["evaluations"] for d in devices.values())
        return {
            "wall_s": round(wall_s, 3),
            "evaluations": self.evaluations,
            "evaluations_per_hour": round(self.evaluations * 3600 / wall, 2),
            "device_evaluations": on_device,
            "evaluations_per_device_hour": round(on_device * 3600 / (wall * n_dev), 2) if n_dev else None,
            "busy_fraction": round(sum(d["busy_fraction"] for d in devices.values()) / n_dev, 4) if n_dev else None,
            # the devices' own time in timed calls (candidate and baselines) over their wall time: a floor on the
            # time the device itself computed, comparable with a GPU's utilisation counter (nvidia-smi dmon)
            "timed_fraction": round(min(1.0, self.stage_s.get("timed_calls", 0.0) / (wall * n_dev)), 4)
            if n_dev else None,
            "idle_devices": idle,
            "devices": devices,
            "stages": {name: {"total_s": round(total, 3), "mean_s": round(total / self.stage_n[name], 4),
                              "count": self.stage_n[name]} for name, total in sorted(self.stage_s.items())},
        }
