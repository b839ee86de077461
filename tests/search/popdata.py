"""Population rows for tests: real EvalResults turned into rows by ``row_from_result``."""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from evaluators.policy import VerifyPolicy, candidate_hash
from evaluators.result import EvalResult, Status, TimeStats
from search.schema import Placement, row_from_result

T0 = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Cand:
    source: str
    params: dict = dataclasses.field(default_factory=dict)
    parent_ids: tuple[str, ...] = ()
    proposer: str = "rewrites"
    backend: str = "torch"
    hardware: str = "cpu"

    @property
    def id(self) -> str:
        return candidate_hash(self.source, self.params)


def source(tag: str) -> str:
    return (f"import torch\n\n\nclass ModelNew(torch.nn.Module):\n    # {tag}\n"
            "    def forward(self, x):\n        return x + 1\n")


def result(status: Status = Status.ACCEPTED, speedup: float | None = 1.5, err: float | None = 1e-6,
           reason: str = "", compile_seconds: float | None = 1.0) -> EvalResult:
    ts = lambda ms: TimeStats(ms, ms * 0.95, ms * 1.05, 50, ms * 0.9, ms * 1.2)  # noqa: E731
    timed = speedup is not None
    return EvalResult(
        status=status, reason=reason or ("ok" if status is Status.ACCEPTED else status.value),
        device="cpu", device_name="Test CPU", max_abs_err=err, max_rel_err=err, rel_fro_err=err,
        probe_verdicts=(("negative", "ok"),), candidate=ts(2.0 / speedup) if timed else None,
        eager=ts(2.0) if timed else None, compile=ts(2.2) if timed else None, speedup=speedup,
        speedup_ci=(speedup * 0.9, speedup * 1.1) if timed else None, compile_seconds=compile_seconds,
        policy={"verify": VerifyPolicy().to_dict()}, provenance={"torch": "2.13.0", "kernelswarm": "0.1.0"},
        profile={"roofline_fraction": 0.25},
    )


def row(tag: str, *, problem: str = "/p/level1/add.py", hardware: str = "cpu", parents: tuple[str, ...] = (),
        generation: int = 0, minutes: float = 0.0, status: Status = Status.ACCEPTED, src: str | None = None,
        **res: Any) -> dict:
    cand = Cand(source=src or source(tag), parent_ids=parents, hardware=hardware)
    return row_from_result(result(status, **res), cand,
                           Placement(campaign="test", problem_path=problem, generation=generation,
                                     island=f"{hardware}"),
                           created_at=T0 + dt.timedelta(minutes=minutes))


def cid(tag: str) -> str:
    return Cand(source=source(tag)).id
