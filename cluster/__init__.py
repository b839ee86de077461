"""Ray for kernelswarm: hardware classes as custom resources, evaluator actors pinned to them, and dispatch.

- ``cluster.hardware``: hardware classes as ``hw:<class>`` resources (the classes and probes: ``evaluators.hardware``).
- ``cluster.node``: ``kswarm node start``, i.e. ``ray start`` with one ``hw:<class>`` unit per device; no Ray import.
- ``cluster.runtime``: ``ensure_ray`` starts a local Ray or joins a cluster.
- ``cluster.actors``: ``EvaluatorActor`` (one per device) and the cheap-check tasks, thin shells over functions.
- ``cluster.pool``: the evaluator actors matched to the alive nodes' devices.
- ``cluster.dispatch``: ``Dispatcher``, the Ray adapter of the scheduler in ``search.scheduler``.

The names below are imported lazily, so that ``import cluster.hardware`` does not import Ray.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Dispatcher": "cluster.dispatch",
    "HardwareUnavailable": "cluster.pool",
    "poisons_device": "cluster.dispatch",
    "ensure_ray": "cluster.runtime",
    "RayHandle": "cluster.runtime",
    "cluster_hardware": "cluster.runtime",
    "detect_devices": "cluster.hardware",
    "node_start_cli": "cluster.node",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cluster' has no attribute {name!r}; it exports {', '.join(__all__)}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
