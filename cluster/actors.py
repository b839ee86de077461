"""Ray shells around the evaluator functions: one ``EvaluatorActor`` per device, and CPU tasks for cheap checks.

The functions themselves (``evaluators.pipeline.evaluate``, ``evaluators.pipeline.precheck``) know nothing of Ray.
They are given as an import path ("package.module:function" or "package.module.function") or as a callable, so
tests and benchmarks inject a null or sleeping evaluator and campaigns the real one.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import logging
import os
import platform
import socket
from typing import Any, Callable, Union

import ray

from cluster import hardware
from evaluators.machines import nvidia_driver_version
from evaluators.policy import EvalRequest
from evaluators.result import EvalResult
from search.protocol import DeviceSlot, accepts_timing_slot, call_evaluate

logger = logging.getLogger(__name__)

EvaluateFn = Callable[[EvalRequest], EvalResult]
PrecheckFn = Callable[[EvalRequest], Union[EvalResult, None]]
FunctionRef = Union[str, Callable[..., Any]]


def resolve(fn: FunctionRef) -> Callable[..., Any]:
    """A callable from an import path ("pkg.mod:fn" or "pkg.mod.fn"), or the callable itself."""
    if callable(fn):
        return fn
    if not isinstance(fn, str) or not fn:
        raise TypeError(f"expected an import path or a callable, got {fn!r}")
    module, sep, name = fn.partition(":")
    if not sep:
        module, _, name = fn.rpartition(".")
    if not module or not name:
        raise ValueError(f"not an import path: {fn!r} (expected 'package.module:function')")
    try:
        target = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {fn!r}: {exc}") from exc
    if not callable(target):
        raise ValueError(f"{fn!r} is not callable")
    return target


def actor_options(hw_class: str, slots: int = 1) -> dict[str, Any]:
    """Ray options that pin an evaluator to one device of ``hw_class``, running up to ``slots`` evaluations at once.

    The ``hw:`` unit gives the device one actor; inside it the timing phase is exclusive (a lock). A CUDA evaluator
    also takes the GPU (Ray then sets CUDA_VISIBLE_DEVICES to it) and one CPU, the core that feeds the GPU, so that
    Ray schedules no cheap check on it while the GPU is timed; a CPU evaluator reserves its CPU likewise. Other
    classes take no CPU.
    """
    cuda = hardware.is_cuda_class(hw_class)
    opts: dict[str, Any] = {"resources": {hardware.resource_name(hw_class): 1}, "max_concurrency": max(1, slots),
                            "max_restarts": 0, "max_task_retries": 0,
                            "num_cpus": 1 if hw_class == "cpu" or cuda else 0}
    if cuda:
        opts["num_gpus"] = 1
    return opts


def _device_name(hw_class: str) -> tuple[str, dict[str, Any]]:
    """The device's name and torch/CUDA versions, importing torch only for a GPU class."""
    versions: dict[str, Any] = {"python": platform.python_version()}
    try:
        versions["torch"] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        versions["torch"] = None
    if hardware.is_cuda_class(hw_class):
        import torch
        versions["cuda"] = torch.version.cuda
        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unavailable"
        if torch.cuda.is_available():
            versions["driver"] = nvidia_driver_version()
        return name, versions
    return hardware.probe_cpu().model, versions    # an Apple chip's brand string is its CPU model too


class EvaluatorActor:
    """One device's evaluator: a thin shell over an evaluate function. Create with ``spawn_evaluator``."""

    def __init__(self, hw_class: str, evaluate: FunctionRef, verify_slots: int | None = None):
        self._hw_class = hw_class
        self._evaluate: EvaluateFn = resolve(evaluate)
        self._takes_slot = accepts_timing_slot(self._evaluate)
        # up to ``verify_slots`` verifications overlap; timing has the device alone; the evaluations held beyond
        # the verify slots build meanwhile
        self._timing_slot = DeviceSlot(verify_slots)
        self._fingerprint: dict[str, Any] | None = None

    def ready(self) -> dict[str, Any]:
        """Cheap liveness answer: where this actor runs."""
        ctx = ray.get_runtime_context()
        return {"hardware": self._hw_class, "node_id": ctx.get_node_id(), "actor_id": ctx.get_actor_id(),
                "hostname": socket.gethostname(), "pid": os.getpid(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}

    def fingerprint(self) -> dict[str, Any]:
        """Class, node, host, device name and versions; computed once."""
        if self._fingerprint is None:
            name, versions = _device_name(self._hw_class)
            self._fingerprint = {**self.ready(), "device_name": name, **versions}
        return dict(self._fingerprint)

    def evaluate(self, req: EvalRequest) -> EvalResult:
        """Evaluate one request; the result's provenance gains ``cluster``: this actor's fingerprint."""
        result = call_evaluate(self._evaluate, req, self._timing_slot, self._takes_slot)
        prov = {**result.provenance, "cluster": self.fingerprint()}
        return dataclasses.replace(result, provenance=prov)


RemoteEvaluator = ray.remote(EvaluatorActor)


def spawn_evaluator(hw_class: str, evaluate: FunctionRef, node_id: str | None = None,
                    slots: int = 1, verify_slots: int | None = None) -> "ray.actor.ActorHandle":
    """Start an evaluator pinned to one device of ``hw_class`` (and to ``node_id`` when given, strictly) that holds
    up to ``slots`` evaluations at once, of which up to ``verify_slots`` (None: all) verify at once."""
    opts = actor_options(hw_class, slots)
    if node_id is not None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    return RemoteEvaluator.options(**opts).remote(hw_class, evaluate, verify_slots)


def _precheck(precheck: FunctionRef, req: EvalRequest) -> EvalResult | None:
    return resolve(precheck)(req)


# Ray's own retries are off: the dispatcher counts attempts itself so that a lost key is retried a bounded number
# of times whatever lost it.
precheck_task = ray.remote(max_retries=0)(_precheck)


def spawn_precheck(precheck: FunctionRef, req: EvalRequest, num_cpus: float = 1.0) -> "ray.ObjectRef":
    """Run the cheap checks for ``req`` on any CPU of the cluster. ``None`` as the result means passed."""
    return precheck_task.options(num_cpus=num_cpus).remote(precheck, req)
