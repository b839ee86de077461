"""Where the campaign's work comes from: the proposers, asked island by island when a device class has room.

This is Ray Tune's ``suggest`` turned around: the campaign keeps a bounded queue ahead of each device class and,
when it runs short, the next islands of that class (in a fixed rotation) are asked for candidates. A generation is
a lineage counter: one full turn of the rotation over a class's islands.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from evaluators.result import EvalResult, Status, TimeStats
from proposers import get_proposer
from proposers.base import Candidate, Proposer
from search.config import CampaignConfig, ProposerSpec
from search.island_view import IslandView
from search.population import Population
from search.schema import eval_key

log = logging.getLogger(__name__)
INBOX = "inbox"          # hand-written candidates dropped in by ``kswarm add``


@dataclasses.dataclass(frozen=True)
class Island:
    problem_path: str
    scale: str
    hardware: str

    @property
    def problem_id(self) -> str:
        return Path(self.problem_path).stem

    @property
    def name(self) -> str:
        return f"{self.problem_id}@{self.hardware}"


@dataclasses.dataclass(frozen=True)
class Pending:
    """One evaluation handed to the dispatcher and not yet in the journal: what a resume needs to send it again.
    The checkpoint holds ``to_dict()``."""

    island: Island
    candidate: Candidate
    generation: int

    @property
    def key(self) -> str:
        return eval_key(self.island.problem_id, self.candidate.id, self.island.hardware)

    def to_dict(self) -> dict:
        return {"island": dataclasses.asdict(self.island), "candidate": self.candidate.to_dict(),
                "generation": self.generation}

    @staticmethod
    def from_dict(d: Mapping) -> "Pending":
        return Pending(Island(**d["island"]), Candidate.from_dict(d["candidate"]), int(d.get("generation", 0)))


def build_proposers(cfg: CampaignConfig, out_dir: Path) -> list[tuple[ProposerSpec, Proposer]]:
    """One set of proposers; the campaign builds one set per hardware class, so that what a proposer has already
    proposed on one class does not keep it from proposing the same candidate on another."""
    built = []
    for spec in cfg.proposers:
        options = dict(spec.options)
        if "campaign_dir" in options:     # set by the campaign file's loader for the LLM proposer
            options["campaign_dir"] = str(Path(options["campaign_dir"]).resolve())
        if spec.kind == "optuna":
            # absolute: Optuna's journal lock is a symlink to this path, which dangles when relative, and a lock
            # left by a killed driver is then never released (the next driver spins on it)
            options.setdefault("campaign_dir", str(Path(out_dir).resolve()))
            options.setdefault("seed", cfg.campaign.seed)
        if spec.kind == "files":
            options = {"paths": [str(options.pop("dir"))]}
        built.append((spec, get_proposer(spec.kind, **options)))
    # hand-written candidates added while the campaign runs (kswarm add) always have a way in
    if not any(spec.kind == "files" and spec.name == INBOX for spec, _ in built):
        (out_dir / INBOX).mkdir(parents=True, exist_ok=True)
        built.append((ProposerSpec(kind="files", name=INBOX, per_generation=64),
                      get_proposer("files", paths=[str(out_dir / INBOX)])))
    return built


class Feed:
    """The islands in rotation per class, and the proposers of each class. ``cursors`` (islands asked so far, per
    class) is what a checkpoint keeps; the generation of a class is its completed turns."""

    def __init__(self, cfg: CampaignConfig, islands: list[Island], proposers: Mapping[str, list],
                 view: Callable[[Population, Island], IslandView], cursors: Mapping[str, int] | None = None):
        self.cfg, self.proposers, self._view = cfg, proposers, view
        self.rings = {hw: [i for i in islands if i.hardware == hw] for hw in dict.fromkeys(i.hardware for i in islands)}
        self.cursors = {hw: int((cursors or {}).get(hw, 0)) for hw in self.rings}

    def generation(self, hw: str | None = None) -> int:
        """Completed turns over the islands of ``hw`` (of the slowest class when None)."""
        gens = [self.cursors[h] // len(ring) for h, ring in self.rings.items() if ring and hw in (None, h)]
        return min(gens) if gens else 0

    def turns_left(self, hw: str) -> bool:
        limit = self.cfg.budget.max_generations
        return limit is None or self.cursors[hw] < limit * len(self.rings[hw])

    def next(self, population: Population, hw: str, want: int, seen: set[str]) -> list[Pending]:
        """Up to about ``want`` new candidates for class ``hw``, asking its islands in turn until they are found or
        a whole turn brings nothing; each with the generation it was proposed in. ``seen`` (keys pending) grows."""
        ring = self.rings.get(hw) or []
        out: list[Pending] = []
        dry = 0                                         # islands asked in a row that had nothing new
        while len(out) < want and dry < len(ring) and self.turns_left(hw):
            island = ring[self.cursors[hw] % len(ring)]
            generation = self.cursors[hw] // len(ring)
            self.cursors[hw] += 1
            got = [Pending(island, c, generation) for c in self._ask(population, island, seen)]
            if self.cursors[hw] % len(ring) == 0:       # a turn completed: winners move between classes
                turn = self.cursors[hw] // len(ring)
                if turn % self.cfg.evolution.migration_every == 0:
                    got += [Pending(i, c, turn) for i, c in self._migrants(population, hw, seen)]
            dry = 0 if got else dry + 1
            out += got
        return out

    def _ask(self, population: Population, island: Island, seen: set[str]) -> list[Candidate]:
        out = []
        view = self._view(population, island)
        for spec, proposer in self.proposers[island.hardware]:
            try:
                cands = proposer.propose(view, spec.per_generation)
            except Exception:  # a proposer's bug must not end the campaign; it is logged with its traceback
                log.exception("proposer %s failed on %s", spec.name, island.name)
                continue
            for c in cands:
                c = dataclasses.replace(c, hardware=island.hardware, problem_id=island.problem_id,
                                        proposer=c.proposer or spec.name)
                key = eval_key(island.problem_id, c.id, island.hardware)
                if key in population or key in seen:
                    continue
                seen.add(key)
                out.append(c)
        return out

    def _migrants(self, population: Population, hw: str, seen: set[str]) -> list[tuple[Island, Candidate]]:
        """A winner on one hardware class is tried on the problem's class ``hw``."""
        out = []
        for island in self.rings[hw]:
            for ring in self.rings.values():
                for other in ring:
                    if other.problem_path != island.problem_path or other.hardware == hw:
                        continue
                    for scored in self._view(population, other).best(self.cfg.evolution.migrants):
                        c = dataclasses.replace(scored.candidate, hardware=hw, parent_ids=(scored.candidate.id,),
                                                proposer="migration")
                        key = eval_key(island.problem_id, c.id, hw)
                        if key not in population and key not in seen:
                            seen.add(key)
                            out.append((island, c))
        return out


def tell(proposers: Mapping[str, list], hardware: str, cand: Candidate, result: EvalResult) -> None:
    """Hand one evaluated (or never run) candidate to the proposers of its class that may have proposed it."""
    for spec, proposer in proposers.get(hardware, ()):
        if spec.name == cand.proposer or cand.proposer.startswith(spec.kind):
            try:
                proposer.observe([(cand, result)])
            except Exception:  # a proposer's bug must not end the campaign
                log.exception("proposer %s failed to observe %s", spec.name, cand.id)


def not_run(reason: str, device: str = "cpu") -> EvalResult:
    """What the proposers are told of work that was never evaluated (withdrawn when the time budget ran out, or
    proposed past the evaluation budget): a ``timeout`` marked ``provenance["not_run"]``, so that a trial asked for
    it is closed (an Optuna trial is told FAIL) and a proposer that cares can tell it from a measured timeout."""
    return EvalResult(status=Status.TIMEOUT, reason=reason, device=device, provenance={"not_run": True})


def result_of_row(row: Mapping) -> EvalResult:
    """The verdict and times of a population row as an ``EvalResult``: what a resume tells the proposers of an
    evaluation the journal holds but the checkpoint does not know was told."""
    ms = row.get("candidate_ms")
    lo, hi = row.get("candidate_ci_low_ms"), row.get("candidate_ci_high_ms")
    times = None if ms is None else TimeStats(ms, ms if lo is None else lo, ms if hi is None else hi,
                                              int(row.get("candidate_count") or 0), ms if lo is None else lo,
                                              ms if hi is None else hi)
    ci = (row.get("speedup_ci_low"), row.get("speedup_ci_high"))
    return EvalResult(status=Status(row["status"]), reason=row.get("reason") or "", device=row.get("torch_device")
                      or "cpu", max_abs_err=row.get("max_abs_err"), max_rel_err=row.get("max_rel_err"),
                      rel_fro_err=row.get("rel_fro_err"), candidate=times, speedup=row.get("speedup"),
                      speedup_ci=None if None in ci else ci, provenance={"replayed": True})


def default_cores() -> int:
    return max(1, (os.cpu_count() or 2) // 2)
