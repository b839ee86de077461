"""Eager and torch.compile baselines, each timed in a clean child that never saw candidate code, measured once per
node and shared by every campaign on it.

A record is keyed by the problem file's content hash, the scale, the hardware class and device, and the versions
that change a time (torch, Triton, CUDA, driver; on a CPU its model and thread count). It keeps its provenance:
when, where, the versions, each baseline's samples and spread, and the eager child's peak resident memory (the
reference's measured footprint, which the memory limit follows). Records are written atomically, and a measurement
holds a lock on its key, so that concurrent evaluations on one node measure a baseline once.

The record decides which baseline is faster; the candidate is then timed against that one again, in paired blocks
(``evaluators.paired``), so the speedup never rests on a time taken at another moment.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import platform
import random
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

from evaluators.judge import CheckLog, Reference, Rejected, init_child, timed_loop, timer_kind
from evaluators.machines import cpu_model_name, hardware_class, nvidia_driver_version
from evaluators.policy import TimingPolicy, VerifyPolicy
from evaluators.result import Status, TimeStats
from evaluators.sandbox import ChildFailed, SandboxLimits
from evaluators.stats import summarize
from evaluators.warm import POOL

log = logging.getLogger(__name__)
CONTENDER_MARGIN = 0.05     # a baseline this close to the fastest is timed in the pairing too


CACHE_ENV = "KSWARM_CACHE"     # names the node's cache folder instead of ~/.cache/kernelswarm


def default_cache_dir() -> Path:
    """The node's build and baseline cache, shared by every campaign and bench of this user on this node:
    ``$KSWARM_CACHE`` when set, else ~/.cache/kernelswarm. Resolved where the evaluation runs, so each node of a
    cluster has its own."""
    named = os.environ.get(CACHE_ENV)
    return Path(named).expanduser() if named else Path.home() / ".cache" / "kernelswarm"


def baseline_dir(cache_dir: str | Path | None) -> Path:
    """Where the baseline records live: under the request's cache folder when it names one, else under the node's
    (``default_cache_dir``)."""
    return (Path(cache_dir) if cache_dir else default_cache_dir()) / "baselines"


def versions(device: str) -> dict[str, Any]:
    try:
        import triton
        triton_version = triton.__version__
    except Exception:   # no Triton on this host (a CPU wheel, a Mac)
        triton_version = None
    return {"torch": torch.__version__, "triton": triton_version, "cuda": torch.version.cuda,
            "driver": nvidia_driver_version() if device.startswith("cuda") else None,
            "python": platform.python_version()}


def key_parts(ref: Reference, device_name: str, timing: TimingPolicy) -> dict[str, Any]:
    timer = timer_kind(ref.device)
    parts = {"problem": ref.info.source_hash, "scale": ref.info.scale,
             "hardware": hardware_class(ref.device, device_name), "device_name": device_name,
             "versions": versions(ref.device), "flush": timing.flush_for(timer)}
    if timer == "cpu":
        parts.update(cpu=cpu_model_name(), threads=torch.get_num_threads())
    return parts


def baseline_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


@dataclasses.dataclass(frozen=True)
class BaselineRecord:
    """One node's measurement of a problem's baselines, with its provenance."""

    key: str
    parts: dict[str, Any]
    measured_at: str
    host: str
    baselines: dict[str, dict[str, Any]]    # name -> samples_ns, stats, compile_seconds, peak_rss_mb
    cached: bool = False                    # read from the cache rather than measured by this evaluation

    def stats(self, name: str) -> TimeStats:
        return TimeStats(**self.baselines[name]["stats"])

    @property
    def fastest(self) -> str:
        return min(self.baselines, key=lambda n: self.stats(n).median_ms)

    def contenders(self, margin: float = CONTENDER_MARGIN) -> list[str]:
        """The baselines whose time is within ``margin`` of the fastest's: which of them is faster when the
        candidate is timed is left to that moment's measurement."""
        best = self.stats(self.fastest).median_ms
        return sorted(n for n in self.baselines if self.stats(n).median_ms <= best * (1 + margin))

    @property
    def footprint_mb(self) -> float | None:
        """The eager reference's peak resident memory in its child, the footprint limits follow."""
        b = self.baselines.get("eager") or next(iter(self.baselines.values()))
        return b.get("peak_rss_mb")

    def provenance(self) -> dict[str, Any]:
        return {"key": self.key, "measured_at": self.measured_at, "host": self.host, "cached": self.cached,
                **{f"{k}": v for k, v in self.parts.items() if k in ("hardware", "device_name", "versions")},
                "spread": {n: round(self.stats(n).rel_half_width, 4) for n in self.baselines},
                "medians_ms": {n: self.stats(n).median_ms for n in self.baselines}}

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d.pop("cached")
        return json.dumps(d, sort_keys=True)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (a lock file beside the record), released when the holder ends or dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_record(directory: Path, key: str, names: tuple[str, ...]) -> BaselineRecord | None:
    """The stored record for ``key`` when it holds every baseline in ``names``; None otherwise."""
    path = directory / f"{key}.json"
    try:
        d = json.loads(path.read_text())
        record = BaselineRecord(**d, cached=True)
        for n in names or tuple(record.baselines):
            record.stats(n)
        return dataclasses.replace(record, baselines={n: record.baselines[n] for n in names}) if names else record
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as e:
        log.warning("ignoring unreadable baseline record %s: %s", path, e)
        return None


def measure_baseline(name: str, ref: Reference, *, timing: TimingPolicy, limits: SandboxLimits, cache_dir: Path,
                     rng: random.Random) -> dict[str, Any]:
    """Time one baseline (``eager`` or ``compile``) in a fresh child: raw samples, their summary, the build time
    and the child's peak resident memory."""
    with POOL.take(limits, cache_dir, "baseline") as child:
        ready = init_child(child, name, ref, candidate_path=None, warmup=timing.warmup)
        run = timed_loop(child, ref, VerifyPolicy(), timing, rng, CheckLog(),   # unchecked: the reference itself
                         flush=timing.flush_for(timer_kind(ref.device)), check=False)
        peak = child.peak_rss
    return {"samples_ns": run.samples_ns, "stats": summarize(run.samples_ns).to_dict(),
            "compile_seconds": ready["compile_seconds"], "peak_rss_mb": round(peak / (1 << 20), 1)}


def baselines(ref: Reference, *, device_name: str, timing: TimingPolicy, limits: SandboxLimits, cache_dir: Path,
              directory: Path, rng: random.Random, fresh: bool = False) -> BaselineRecord:
    """The node's record of this problem's baselines, measured (and stored) when missing or when ``fresh``. A
    baseline that fails is a problem error."""
    parts = key_parts(ref, device_name, timing)
    key = baseline_key(parts)
    if not fresh:
        found = read_record(directory, key, timing.baselines)
        if found is not None:
            return found
    with _locked(directory / f".{key}.lock"):
        if not fresh:   # another evaluation may have measured it while this one waited for the lock
            found = read_record(directory, key, timing.baselines)
            if found is not None:
                return found
        measured = {}
        for name in timing.baselines:
            try:
                measured[name] = measure_baseline(name, ref, timing=timing, limits=limits, cache_dir=cache_dir,
                                                  rng=rng)
            except (Rejected, ChildFailed) as e:
                raise Rejected(Status.BASELINE_ERROR, f"the {name} baseline failed: {e.reason}") from None
        record = _store(directory, key, parts, measured)
    return dataclasses.replace(record, baselines={n: record.baselines[n] for n in timing.baselines})


def _store(directory: Path, key: str, parts: dict[str, Any], measured: dict[str, dict[str, Any]]) -> BaselineRecord:
    """Write the record of ``measured`` (the caller holds the key's lock); a fresh measurement of some baselines
    keeps the others stored before."""
    record = BaselineRecord(key=key, parts=parts, measured_at=dt.datetime.now(dt.timezone.utc).isoformat(),
                            host=socket.gethostname(), baselines=measured)
    old = read_record(directory, key, ())
    if old is not None:
        record = dataclasses.replace(record, baselines={**old.baselines, **measured})
    _atomic_write(directory / f"{key}.json", record.to_json())
    return record


def record_from_pairing(ref: Reference, *, device_name: str, timing: TimingPolicy, directory: Path,
                        samples: dict[str, list[int]], built: dict[str, dict[str, Any]],
                        fresh: bool = False) -> BaselineRecord:
    """The node's record made from the baselines' calls timed while they were paired with a candidate (a problem's
    first evaluation on this node, or a fresh re-measurement): every baseline of ``timing`` was paired, each in
    its own clean child, so no separate measurement is needed. ``built`` holds each child's compile seconds and
    peak resident memory. When another evaluation stored a record for the key meanwhile (and not ``fresh``), that
    one is returned and kept."""
    parts = key_parts(ref, device_name, timing)
    key = baseline_key(parts)
    with _locked(directory / f".{key}.lock"):
        if not fresh:
            found = read_record(directory, key, timing.baselines)
            if found is not None:
                return found
        measured = {n: {"samples_ns": list(s), "stats": summarize(s).to_dict(),
                        "compile_seconds": built.get(n, {}).get("compile_seconds"),
                        "peak_rss_mb": built.get(n, {}).get("peak_rss_mb")} for n, s in samples.items()}
        record = _store(directory, key, parts, measured)
    return dataclasses.replace(record, baselines={n: record.baselines[n] for n in timing.baselines
                                                  if n in record.baselines})


def lookup(ref: Reference, device_name: str, timing: TimingPolicy, directory: Path) -> BaselineRecord | None:
    """The stored record holding every baseline of ``timing``, if any, without measuring."""
    return read_record(directory, baseline_key(key_parts(ref, device_name, timing)), timing.baselines)
