"""Timers that return one raw sample per call, looked up by device kind.

Every timer has one signature: ``timer(fn, flush=...)`` runs ``fn`` once and returns the elapsed nanoseconds of that
call. Statistics over samples live in ``evaluators.stats``. Each timer also keeps ``last_host_ns``, the host clock
over the same call, so that callers can cross-check device timings against wall time.

torch is imported only by the constructors that need it.
"""
from __future__ import annotations

import glob
import logging
import os
import time
from typing import Any, Callable, Protocol

logger = logging.getLogger(__name__)

FALLBACK_LLC_BYTES = 32 * 1024 * 1024
FALLBACK_LINE_BYTES = 64
MPS_FLUSH_BYTES = 256 * 1024 * 1024   # no API reports Apple's system-level cache; this is above every chip's
CPU_FLUSH_FACTOR = 2
CUDA_FLUSH_FACTOR = 4


class Timer(Protocol):
    """Runs ``fn`` once and returns the elapsed ns of that one call; ``flush`` first evicts caches, untimed."""

    last_host_ns: int | None

    def __call__(self, fn: Callable[[], Any], *, flush: bool) -> int: ...


def _parse_cache_size(text: str) -> int:
    text = text.strip().upper()
    units = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def _read_int_file(path: str) -> int | None:
    try:
        with open(path) as f:
            return _parse_cache_size(f.read())
    except (OSError, ValueError):
        return None


def last_level_cache_bytes(cache_dir: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """Size of CPU 0's highest-level cache from sysfs, or 32 MB where sysfs does not say."""
    best: tuple[int, int] | None = None  # (level, size)
    for index in glob.glob(os.path.join(cache_dir, "index*")):
        level = _read_int_file(os.path.join(index, "level"))
        size = _read_int_file(os.path.join(index, "size"))
        if size is None:
            continue
        key = (level or 0, size)
        if best is None or key > best:
            best = key
    if best is None:
        logger.info("no cache sizes in %s; assuming a %d-byte last-level cache", cache_dir, FALLBACK_LLC_BYTES)
        return FALLBACK_LLC_BYTES
    return best[1]


# Bound once at import, before any candidate code runs in the process: replacing time.perf_counter_ns later
# does not reach the timers.
_now = time.perf_counter_ns


def now_ns() -> int:
    """The clock bound at import (see above)."""
    return _now()


class CpuTimer:
    """``perf_counter_ns`` around the call; the flush writes a buffer of twice the last-level cache, untimed."""

    def __init__(self, device: Any = None, flush_bytes: int | None = None) -> None:
        self.flush_bytes = flush_bytes if flush_bytes is not None else CPU_FLUSH_FACTOR * last_level_cache_bytes()
        self.line_bytes = _read_int_file("/sys/devices/system/cpu/cpu0/cache/index0/coherency_line_size") \
            or FALLBACK_LINE_BYTES
        self.last_host_ns: int | None = None
        self._buffer: Any = None  # allocated on the first flush, then reused

    def flush(self) -> None:
        """Evict the last-level cache, untimed."""
        import numpy as np
        if self._buffer is None:
            self._buffer = np.zeros(self.flush_bytes, dtype=np.uint8)
        # A read-modify-write of one byte per line pulls every line into the cache. A plain fill of a buffer this
        # large may use non-temporal stores, which bypass the cache and would evict nothing.
        lines = self._buffer[:: self.line_bytes]
        lines += 1

    def __call__(self, fn: Callable[[], Any], *, flush: bool) -> int:
        if flush:
            self.flush()
        start = _now()
        fn()
        elapsed = _now() - start
        self.last_host_ns = elapsed
        return elapsed


class CudaTimer:
    """CUDA events around the call, with a whole-device synchronize before the end event is recorded.

    The device-wide synchronize means work that ``fn`` left on any stream is finished, and counted, before the end
    event is recorded; the price is the synchronize's own latency (microseconds), which stays in every sample.
    """

    def __init__(self, device: Any = None) -> None:
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA timer requested but torch.cuda.is_available() is False")
        self._torch = torch
        if device is None:
            dev = torch.device("cuda")
        elif isinstance(device, int):
            dev = torch.device("cuda", device)
        else:
            dev = torch.device(device)
        if dev.type != "cuda":
            raise ValueError(f"CUDA timer needs a CUDA device, not {dev}")
        self.device = torch.device("cuda", torch.cuda.current_device() if dev.index is None else dev.index)
        l2_bytes = int(getattr(torch.cuda.get_device_properties(self.device), "L2_cache_size", 0) or 0)
        if l2_bytes <= 0:
            l2_bytes = 64 * 1024 * 1024
            logger.warning("device %s reports no L2 size; assuming %d bytes", self.device, l2_bytes)
        self.flush_bytes = CUDA_FLUSH_FACTOR * l2_bytes
        self.last_host_ns: int | None = None
        self._buffer: Any = None  # allocated on the first flush, then reused
        with torch.cuda.device(self.device):
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)

    def flush(self) -> None:
        """Evict L2 by writing a buffer several times its size, untimed."""
        if self._buffer is None:
            self._buffer = self._torch.empty(self.flush_bytes, dtype=self._torch.uint8, device=self.device)
        self._buffer.zero_()

    def __call__(self, fn: Callable[[], Any], *, flush: bool) -> int:
        torch = self._torch
        with torch.cuda.device(self.device):
            # Both events go on the stream that was current before fn, even if fn switches streams.
            stream = torch.cuda.current_stream(self.device)
            if flush:
                self.flush()
            # An idle device at the start makes the host clock cover the same span as the events.
            torch.cuda.synchronize(self.device)
            host_start = _now()
            self._start.record(stream)
            fn()
            torch.cuda.synchronize(self.device)
            self._end.record(stream)
            self._end.synchronize()
            self.last_host_ns = _now() - host_start
        return int(round(self._start.elapsed_time(self._end) * 1e6))


class MpsTimer:
    """``torch.mps`` events around the call where this torch has them, else the host clock; synchronize first."""

    def __init__(self, device: Any = None) -> None:
        import torch
        if not torch.backends.mps.is_available():
            raise RuntimeError("MPS timer requested but torch.backends.mps.is_available() is False")
        self._torch = torch
        event_cls = getattr(torch.mps, "Event", None) or getattr(getattr(torch.mps, "event", None), "Event", None)
        if event_cls is None:
            logger.warning("this torch has no torch.mps events; the MPS timer falls back to the host clock")
            self._start = self._end = None
        else:
            self._start = event_cls(enable_timing=True)
            self._end = event_cls(enable_timing=True)
        self.flush_bytes = MPS_FLUSH_BYTES
        self.last_host_ns: int | None = None
        self._buffer: Any = None

    def flush(self) -> None:
        if self._buffer is None:
            self._buffer = self._torch.empty(self.flush_bytes, dtype=self._torch.uint8, device="mps")
        self._buffer.zero_()

    def __call__(self, fn: Callable[[], Any], *, flush: bool) -> int:
        torch = self._torch
        if flush:
            self.flush()
        torch.mps.synchronize()
        host_start = _now()
        if self._start is not None:
            self._start.record()
        fn()
        torch.mps.synchronize()
        if self._end is not None:
            self._end.record()
            self._end.synchronize()
        self.last_host_ns = _now() - host_start
        if self._start is None:
            return self.last_host_ns
        return int(round(self._start.elapsed_time(self._end) * 1e6))


# kind -> constructor; constructors import what they need, so looking a timer up costs nothing until it is built
_TIMERS: dict[str, Callable[[Any], Timer]] = {
    "cpu": CpuTimer,
    "cuda": CudaTimer,
    "mps": MpsTimer,
}


def get_timer(kind: str, device: Any = None) -> Timer:
    """A new timer for ``kind`` ("cpu", "cuda" or "mps") on ``device``; an unknown kind lists the valid ones."""
    try:
        factory = _TIMERS[kind]
    except KeyError:
        raise ValueError(f"unknown timer kind {kind!r}; valid kinds: {', '.join(sorted(_TIMERS))}") from None
    return factory(device)
