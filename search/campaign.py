"""The campaign loop: proposers -> dispatch -> results -> population -> observe -> checkpoint.

The population journal is the source of truth for what was evaluated; the checkpoint holds the rest (proposer
states, generation, evaluations in flight with what is needed to send them again, elapsed time). Both are written
atomically, the journal first, so a driver killed at any moment leaves a directory that ``resume`` continues
without losing or repeating an evaluation.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evaluators.policy import EvalRequest
from evaluators.result import EvalResult
from proposers import get_proposer
from proposers.base import Candidate, Proposer
from search.checkpoint import Checkpoint, load_checkpoint, restore_rng, rng_state, save_checkpoint, to_dispatch_again
from search.config import CampaignConfig, ProposerSpec
from search.island_view import IslandView
from search.population import Population
from search.schema import Placement, eval_key, row_from_result

log = logging.getLogger(__name__)
INBOX = "inbox"          # hand-written candidates dropped in by ``kswarm add``


@dataclasses.dataclass
class Progress:
    """What the live view shows; passed to the caller's callback after every result."""
    done: int = 0
    in_flight: int = 0
    budget: int = 0
    generation: int = 0
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    best: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)   # (problem, hw) -> speedup
    elapsed_s: float = 0.0
    eta_s: float | None = None
    note: str = ""


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


def build_proposers(cfg: CampaignConfig, out_dir: Path) -> list[tuple[ProposerSpec, Proposer]]:
    """One set of proposers; the campaign builds one set per hardware class, so that what a proposer has already
    proposed on one class does not keep it from proposing the same candidate on another."""
    built = []
    for spec in cfg.proposers:
        options = dict(spec.options)
        if spec.kind == "optuna":
            options.setdefault("campaign_dir", str(out_dir))
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


class Campaign:
    """One campaign directory driven to its budget. Use ``run``; it resumes when the directory has a checkpoint."""

    def __init__(self, cfg: CampaignConfig, out_dir: Path, *, address: str | None = None,
                 on_progress: Callable[[Progress], None] | None = None, dispatcher_factory: Callable | None = None):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.address = address
        self.on_progress = on_progress or (lambda p: None)
        self.dispatcher_factory = dispatcher_factory
        self.cache_dir = self.out / "cache"
        self.islands = [Island(str(f), spec.scale, t.hardware)
                        for spec in cfg.problems for f in spec.files for t in cfg.targets]
        self.progress = Progress(budget=cfg.budget.max_evaluations)
        self.pending: dict[str, dict[str, Any]] = {}     # eval_key -> candidate and placement, until appended

    # state -------------------------------------------------------------------------------------------------------
    def _checkpoint(self, proposers, rng: random.Random, generation: int, elapsed: float) -> None:
        save_checkpoint(self.out, Checkpoint(
            generations={"campaign": generation},
            proposer_states={f"{spec.name}@{hw}": p.get_state() for hw, ps in proposers.items() for spec, p in ps},
            in_flight=dict(self.pending), rng_state=rng_state(rng), elapsed_s=elapsed))

    def _request(self, island: Island, cand: Candidate) -> EvalRequest:
        # baselines once per candidate here; export re-measures with two rounds
        return self.cfg.bench_request(island.problem_path, cand.source, island.hardware, island.scale,
                                      self.cache_dir, rounds=1)

    def _submit(self, dispatcher, key: str, item: dict[str, Any]) -> None:
        island, cand = Island(**item["island"]), Candidate.from_dict(item["candidate"])
        dispatcher.submit(key, self._request(island, cand), island.hardware, priority=cost_rank(cand))

    def _view(self, population: Population, island: Island) -> IslandView:
        return IslandView(population, island.problem_path, island.hardware,
                          cache_dir=str(self.cache_dir / "torch_extensions"), cores=max(1, (os.cpu_count() or 2) // 2),
                          hardwares=tuple(t.hardware for t in self.cfg.targets),
                          near_duplicate=self.cfg.evolution.near_duplicate, max_parents=self.cfg.evolution.parents,
                          pool=self.cfg.evolution.population_per_island)

    # proposing ---------------------------------------------------------------------------------------------------
    def _proposals(self, population: Population, proposers, generation: int) -> list[tuple[Island, Candidate]]:
        out: list[tuple[Island, Candidate]] = []
        seen: set[str] = set(self.pending)
        for island in self.islands:
            view = self._view(population, island)
            for spec, proposer in proposers[island.hardware]:
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
                    out.append((island, c))
        if generation and generation % self.cfg.evolution.migration_every == 0:
            out += self._migrants(population, seen)
        return out

    def _migrants(self, population: Population, seen: set[str]) -> list[tuple[Island, Candidate]]:
        """A winner on one hardware class is tried on the problem's other classes."""
        out = []
        for island in self.islands:
            for other in self.islands:
                if other.problem_path != island.problem_path or other.hardware == island.hardware:
                    continue
                for scored in self._view(population, other).best(self.cfg.evolution.migrants):
                    c = dataclasses.replace(scored.candidate, hardware=island.hardware,
                                            parent_ids=(scored.candidate.id,), proposer="migration")
                    key = eval_key(island.problem_id, c.id, island.hardware)
                    if key not in population and key not in seen:
                        seen.add(key)
                        out.append((island, c))
        return out

    # running -----------------------------------------------------------------------------------------------------
    def run(self) -> Progress:
        from cluster.runtime import ensure_ray

        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "logs").mkdir(exist_ok=True)
        handler = logging.FileHandler(self.out / "logs" / "campaign.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(min(logging.getLogger().level or logging.INFO, logging.INFO))
        population = Population.open(self.out, writer=True)
        ray_handle = None
        dispatcher = None
        old_sigterm = None
        try:
            ck = load_checkpoint(self.out)
            proposers = {t.hardware: build_proposers(self.cfg, self.out) for t in self.cfg.targets}
            if ck is not None:
                for hw, ps in proposers.items():
                    for spec, p in ps:
                        state = ck.proposer_states.get(f"{spec.name}@{hw}")
                        if state is not None:
                            p.set_state(state)
            rng = restore_rng(ck.rng_state) if ck and ck.rng_state else random.Random(self.cfg.campaign.seed)
            generation = (ck.generations.get("campaign", 0) if ck else 0)
            elapsed0 = ck.elapsed_s if ck else 0.0
            self.pending = dict(to_dispatch_again(ck, population))
            if ck is not None:
                log.info("resuming at generation %d with %d evaluations in the journal and %d to send again",
                         generation, len(population), len(self.pending))
            ray_handle = ensure_ray(self.address, temp_dir=_ray_temp_dir(self.out))
            old_sigterm = _sigterm_as_interrupt()    # after ray.init, which installs its own; restored below
            dispatcher = self._dispatcher()
            for key, item in self.pending.items():
                self._submit(dispatcher, key, item)
            self._loop(population, proposers, dispatcher, rng, generation, elapsed0)
        finally:
            if old_sigterm is not None:
                signal.signal(signal.SIGTERM, old_sigterm)
            if dispatcher is not None:
                dispatcher.shutdown()
            if ray_handle is not None:
                ray_handle.shutdown()
            population.close()
            logging.getLogger().removeHandler(handler)
            handler.close()
        return self.progress

    def _dispatcher(self):
        if self.dispatcher_factory is not None:
            return self.dispatcher_factory(self.cfg)
        from cluster.dispatch import Dispatcher
        return Dispatcher([t.hardware for t in self.cfg.targets], "evaluators.pipeline:evaluate",
                          "evaluators.pipeline:precheck", timeout_s=self.cfg.verify.timeout_s * 4,
                          retries=2, wait_s=max(t.wait_s for t in self.cfg.targets))

    def _loop(self, population, proposers, dispatcher, rng, generation, elapsed0) -> None:
        budget = self.cfg.budget
        started = time.monotonic()
        elapsed = lambda: elapsed0 + time.monotonic() - started  # noqa: E731
        p = self.progress
        p.done = len(population)
        self._refresh(population, p)
        while True:
            time_left = budget.max_minutes * 60 - elapsed()
            room = budget.max_evaluations - len(population) - len(self.pending)
            gens_left = budget.max_generations is None or generation < budget.max_generations
            if not self.pending and (time_left <= 0 or room <= 0 or not gens_left):
                p.note = "budget reached"
                break
            if not self.pending:
                proposals = self._proposals(population, proposers, generation)
                if not proposals:
                    p.note = "search exhausted: no proposer has anything new"
                    break
                rng.shuffle(proposals)
                for island, cand in proposals[:room]:
                    key = eval_key(island.problem_id, cand.id, island.hardware)
                    self.pending[key] = {"island": dataclasses.asdict(island), "candidate": cand.to_dict(),
                                         "generation": generation}
                # the checkpoint names what is about to be sent before it is sent
                self._checkpoint(proposers, rng, generation, elapsed())
                sent = dispatcher.in_flight()
                for key, item in self.pending.items():
                    if key not in sent:
                        self._submit(dispatcher, key, item)
                generation += 1
                p.generation = generation
            for key, hw, result in dispatcher.poll(timeout=1.0):
                self._record(population, proposers, key, result)
                self._checkpoint(proposers, rng, generation, elapsed())
                p.done, p.in_flight, p.elapsed_s = len(population), len(self.pending), elapsed()
                self._refresh(population, p)
                p.eta_s = self._eta(p, time_left)
                self.on_progress(p)
            if self.pending and budget.max_minutes * 60 - elapsed() <= 0:
                self._withdraw_unstarted(dispatcher, proposers, rng, generation, elapsed())
            p.in_flight, p.elapsed_s = len(self.pending), elapsed()
            self.on_progress(p)
        self._checkpoint(proposers, rng, generation, elapsed())

    def _withdraw_unstarted(self, dispatcher, proposers, rng, generation: int, elapsed: float) -> None:
        """The time budget is spent: what has not reached a device is not started (it is logged, and named in
        ``logs/not_started.jsonl``); what is running finishes and is recorded."""
        taken = dispatcher.withdraw()
        if not taken:
            return
        with open(self.out / "logs" / "not_started.jsonl", "a") as f:
            for key in taken:
                item = self.pending.pop(key)
                f.write(json.dumps({"eval_key": key, "generation": item["generation"],
                                    "island": item["island"], "candidate_id": item["candidate"]["id"],
                                    "proposer": item["candidate"].get("proposer", "")}) + "\n")
        log.info("time budget spent: %d queued evaluations not started (logs/not_started.jsonl); "
                 "%d running ones finish", len(taken), len(self.pending))
        self.progress.note = f"time budget spent: {len(taken)} queued not started"
        self._checkpoint(proposers, rng, generation, elapsed)

    def _record(self, population: Population, proposers, key: str, result: EvalResult) -> None:
        item = self.pending.get(key)
        if item is None:
            log.warning("result for %s, which is not pending; ignored", key)
            return
        island = Island(**item["island"])
        cand = Candidate.from_dict(item["candidate"])
        node = str((result.provenance.get("cluster") or {}).get("node_id", ""))
        where = Placement(campaign=self.cfg.campaign.name, problem_path=island.problem_path,
                          generation=item["generation"], island=island.name, node_id=node, scale=island.scale)
        population.append([row_from_result(result, cand, where)])   # the journal first, then the checkpoint
        del self.pending[key]
        log.info("%s %s %s", key, result.status.value, result.reason)
        for spec, proposer in proposers.get(island.hardware, ()):
            if spec.name == cand.proposer or cand.proposer.startswith(spec.kind):
                try:
                    proposer.observe([(cand, result)])
                except Exception:
                    log.exception("proposer %s failed to observe %s", spec.name, key)

    def _refresh(self, population: Population, p: Progress) -> None:
        p.statuses = dict(population.status_counts())
        best = population.best()
        p.best = {(r["problem_id"], r["hardware"]): r["speedup"] for r in best.to_pylist()
                  if r.get("speedup") is not None}

    @staticmethod
    def _eta(p: Progress, time_left: float) -> float | None:
        if p.done == 0 or p.elapsed_s <= 0:
            return None
        per_eval = p.elapsed_s / max(1, p.done)
        return max(0.0, min(time_left, (p.budget - p.done) * per_eval))


# How long a candidate takes to evaluate, by backend, cheapest first: plain torch runs at once; generated kernels
# build once; a torch.compile candidate compiles for tens of seconds (minutes with autotuning) on the device.
_COST_RANK = {"torch": 0, "cpp": 1, "triton": 1, "cuda": 1, "compile": 2}


def cost_rank(cand: Candidate) -> int:
    """The dispatch priority of a candidate: within a generation, the cheap ones reach the devices first, so a
    time budget is spent on many quick answers before a few slow ones."""
    rank = _COST_RANK.get(cand.backend, 1)
    if rank == 2 and (cand.params.get("compile") or {}).get("max_autotune"):
        rank = 3
    return rank


def _on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _sigterm_as_interrupt() -> Any:
    """SIGTERM (``timeout``, a batch scheduler) stops the campaign like Ctrl-C: the loop unwinds, the actors and
    the local Ray stop, and the directory resumes. Returns the handler it replaced, or None off the main thread,
    which cannot take signals."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def _ray_temp_dir(out: Path) -> str:
    # Ray's socket paths must stay short (about 100 bytes): a per-campaign folder under the system temp dir
    import hashlib
    tag = hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:8]
    path = Path(tempfile.gettempdir()) / f"kswarm-ray-{tag}"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)
