"""``IslandView``: the ``proposers.base.ProblemView`` of one (problem, hardware class) island, over a Population."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from proposers.base import Candidate, Failure, Scored
from search import parents, views
from search.population import Population


@dataclasses.dataclass(frozen=True)
class IslandView:
    """Read-only; it follows the population as it grows (each call queries it afresh)."""

    population: Population
    problem_path: str
    hardware: str
    cache_dir: str | None = None
    cores: int = 1
    hardwares: tuple[str, ...] = ()     # the campaign's classes for this problem: each one's speedup is an objective
    near_duplicate: float = 0.95        # code-token similarity at which a candidate is too close to a chosen parent
    max_parents: int | None = None      # the most parents served, whatever a proposer asks for
    pool: int | None = None             # the island's population size: parents come from its best-ranked candidates

    @property
    def problem_id(self) -> str:
        return Path(self.problem_path).stem

    def best(self, k: int = 5) -> list[Scored]:
        """The island's parents: accepted candidates by Pareto rank over (speedup on each class, error), with no
        near duplicates among them (``search.parents``). Suspect speedups are not accepted and never appear."""
        if self.max_parents is not None:
            k = min(k, self.max_parents)
        rows = parents.select(self.population.island(self.problem_id), self.problem_id, self.hardware, k,
                              hardwares=self.hardwares, near_duplicate=self.near_duplicate, pool=self.pool)
        profiles = [json.loads(p) if p else None for p in rows.column("profile").to_pylist()]
        return [Scored(Candidate.from_dict(d), speedup=s, candidate_ms=ms, profile=prof)
                for d, s, ms, prof in zip(views.candidate_dicts(rows), rows.column("speedup").to_pylist(),
                                          rows.column("candidate_ms").to_pylist(), profiles, strict=True)]

    def failures(self, k: int = 20) -> list[Failure]:
        """Rejected or failed candidates with their status and reason, most recent first."""
        rows = views.recent_failures(self.population.island(self.problem_id, self.hardware), k, columns=None)
        return [Failure(Candidate.from_dict(d), status=s, reason=r or "")
                for d, s, r in zip(views.candidate_dicts(rows), rows.column("status").to_pylist(),
                                   rows.column("reason").to_pylist(), strict=True)]
