"""A real, cheap evaluate function for the scheduling tests without Ray.

The candidate source is a script of directives, one per line: ``sleep S``; ``hang`` (sleeps until the test
ends); ``poison`` (a crash that leaves the device unusable); ``lose-once PATH`` (the worker is lost the first time,
while PATH does not exist); ``lose`` (lost every time); ``raise`` (the function's own bug); ``bad`` (rejected
by the precheck); ``touch PATH``; ``wait-for PATH`` (blocks until PATH exists, up to 30 s, then answers
``timeout``); ``wait-for-files DIR N`` (likewise, until DIR holds N files).
Each answer names the thread it ran in, and whether it held the timing slot.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from evaluators.policy import EvalRequest
from evaluators.result import EvalResult, Status
from search.local_dispatch import WorkerLost


def _directives(req: EvalRequest) -> list[list[str]]:
    return [line.split() for line in req.candidate_source.splitlines() if line.strip() and not line.startswith("#")]


def scripted(req: EvalRequest, *, timing_slot=None) -> EvalResult:
    for words in _directives(req):
        op, args = words[0], words[1:]
        if op == "sleep":
            time.sleep(float(args[0]))
        elif op == "hang":
            time.sleep(120)
        elif op == "poison":
            return EvalResult(status=Status.CRASHED, reason="the device context is unusable", device=req.device,
                              device_poisoned=True)
        elif op == "lose-once":
            marker = Path(args[0])
            if not marker.exists():
                marker.write_text("lost")
                raise WorkerLost("the sandbox died")
        elif op == "lose":
            raise WorkerLost("the sandbox died")
        elif op == "raise":
            raise RuntimeError("a bug in the evaluator")
        elif op == "touch":
            Path(args[0]).write_text("")
        elif op in ("wait-for", "wait-for-files"):
            end = time.monotonic() + 30
            done = (lambda: Path(args[0]).exists()) if op == "wait-for" else (
                lambda: len(list(Path(args[0]).iterdir())) >= int(args[1]))
            while not done():
                if time.monotonic() > end:
                    return EvalResult(status=Status.TIMEOUT, reason=f"{args[0]} never appeared", device=req.device)
                time.sleep(0.02)
    held = False
    if timing_slot is not None:
        with timing_slot:
            held = True
    return EvalResult(status=Status.ACCEPTED, reason=f"thread={threading.get_ident()} slot={held}",
                      device=req.device)


def precheck(req: EvalRequest) -> EvalResult | None:
    if any(words[0] == "bad" for words in _directives(req)):
        return EvalResult(status=Status.STATIC_VIOLATION, reason="precheck: bad", device=req.device)
    return None


def request(source: str = "", device: str = "cpu") -> EvalRequest:
    return EvalRequest(problem_path="problem.py", candidate_source=source, device=device)


def drain(dispatcher, limit_s: float = 60.0) -> list:
    got = []
    end = time.monotonic() + limit_s
    while dispatcher.in_flight():
        assert time.monotonic() < end, f"still pending after {limit_s} s: {sorted(dispatcher.in_flight())}"
        got += dispatcher.poll(timeout=1.0)
    return got
