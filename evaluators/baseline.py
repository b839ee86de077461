"""Eager and torch.compile baselines, each timed in a clean child that never saw candidate code.

Measurements are cached per (problem source, scale, device, versions, timing policy) in the cache directory, so a
campaign pays for a baseline once; ``kswarm bench`` also measures them again after the candidate (a sandwich) so
that drift shows.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import torch

from evaluators.judge import CheckLog, Reference, Rejected, init_child, timed_loop, timer_kind
from evaluators.policy import TimingPolicy, VerifyPolicy
from evaluators.result import Status
from evaluators.sandbox import Child, ChildFailed, SandboxLimits

log = logging.getLogger(__name__)


def baseline_key(ref: Reference, device_name: str, timing: TimingPolicy) -> str:
    parts = {
        "problem": ref.info.source_hash, "scale": ref.info.scale, "device": ref.device, "device_name": device_name,
        "torch": torch.__version__, "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
        "timing": {k: v for k, v in timing.to_dict().items() if k not in ("rounds", "baselines")},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def measure_baseline(name: str, ref: Reference, *, timing: TimingPolicy, limits: SandboxLimits, cache_dir: Path,
                     rng: random.Random) -> dict[str, Any]:
    """Time one baseline (``eager`` or ``compile``) in a fresh child. Returns raw samples and compile seconds."""
    with Child(limits, cache_dir, label=f"baseline-{name}") as child:
        ready = init_child(child, name, ref, candidate_path=None, warmup=timing.warmup)
        run = timed_loop(child, ref, VerifyPolicy(), timing, rng, CheckLog(),   # unchecked: the reference itself
                         flush=timing.flush_for(timer_kind(ref.device)), check=False)
    return {"samples_ns": run.samples_ns, "compile_seconds": ready["compile_seconds"],
            "device_name": ready["device_name"]}


def cached_baselines(ref: Reference, *, device_name: str, timing: TimingPolicy, limits: SandboxLimits,
                     cache_dir: Path, rng: random.Random, fresh: bool = False) -> dict[str, dict[str, Any]]:
    """Baselines from the cache, or measured and stored. A baseline that fails is a problem error."""
    path = cache_dir / "baselines" / f"{baseline_key(ref, device_name, timing)}.json"
    if not fresh and path.exists():
        try:
            data = json.loads(path.read_text())
            if all(b in data for b in timing.baselines):
                return data
        except (OSError, ValueError):
            log.warning("ignoring unreadable baseline cache %s", path)
    data = {}
    for name in timing.baselines:
        try:
            data[name] = measure_baseline(name, ref, timing=timing, limits=limits, cache_dir=cache_dir, rng=rng)
        except (Rejected, ChildFailed) as e:
            raise Rejected(Status.BASELINE_ERROR, f"the {name} baseline failed: {e.reason}") from None
    _atomic_write(path, json.dumps(data))
    return data
