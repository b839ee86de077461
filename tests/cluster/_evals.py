"""Evaluators for the cluster tests, importable by Ray workers as ``tests.cluster._evals``.

The candidate source is a tiny script of directives, so one function covers every behaviour a test needs:
``sleep S``, ``hang``, ``crash-cuda``, ``die-once PATH`` (the worker process dies the first time, when PATH does
not exist yet), ``die`` (dies every time), ``bad`` (rejected by the precheck).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import ray

from evaluators.policy import EvalRequest
from evaluators.result import EvalResult, Status


def _directives(req: EvalRequest) -> list[list[str]]:
    return [line.split() for line in req.candidate_source.splitlines() if line.strip()]


def scripted(req: EvalRequest) -> EvalResult:
    """Obeys the directives, then accepts; the reason records the node and process it ran in."""
    for words in _directives(req):
        op, args = words[0], words[1:]
        if op == "sleep":
            time.sleep(float(args[0]))
        elif op == "hang":
            time.sleep(3600)
        elif op == "crash-cuda":
            return EvalResult(status=Status.CRASHED, reason="CUDA error: an illegal memory access was encountered",
                              device=req.device, device_poisoned=True)
        elif op == "die-once":
            marker = Path(args[0])
            if not marker.exists():
                marker.write_text("died")
                os._exit(1)
        elif op == "die":
            os._exit(1)
    ctx = ray.get_runtime_context()
    return EvalResult(status=Status.ACCEPTED, reason=f"node={ctx.get_node_id()} pid={os.getpid()}",
                      device=req.device, provenance={"ran_on": ctx.get_node_id(), "pid": os.getpid()})


def null(req: EvalRequest) -> EvalResult:
    return EvalResult(status=Status.ACCEPTED, reason="null")


def precheck(req: EvalRequest) -> EvalResult | None:
    """Rejects ``bad`` candidates; the reason records where the check ran."""
    if any(words[0] == "bad" for words in _directives(req)):
        node = ray.get_runtime_context().get_node_id()
        return EvalResult(status=Status.STATIC_VIOLATION, reason=f"precheck node={node}", device=req.device)
    return None


def request(source: str = "", device: str = "cpu") -> EvalRequest:
    return EvalRequest(problem_path="problem.py", candidate_source=source, device=device)


def drain(dispatcher, limit_s: float = 90.0) -> list:
    """Poll until nothing is pending; every (key, hardware, result) in delivery order."""
    got = []
    end = time.monotonic() + limit_s
    while dispatcher.in_flight():
        assert time.monotonic() < end, f"still pending after {limit_s} s: {sorted(dispatcher.in_flight())}"
        got += dispatcher.poll(timeout=1.0)
    return got
