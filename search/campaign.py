"""The campaign loop: proposers -> dispatch -> results -> population -> observe -> checkpoint.

The population journal is the source of truth for what was evaluated; the checkpoint holds the rest (proposer
states, generation, evaluations in flight with what is needed to send them again, elapsed time). Both are written
atomically, the journal first, so a driver killed at any moment leaves a directory that ``resume`` continues
without losing or repeating an evaluation.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from evaluators.policy import EvalRequest
from evaluators.result import EvalResult
from proposers.base import Candidate, device_kind
from search import report_data
from search.checkpoint import Checkpoint, load_checkpoint, restore_rng, rng_state, save_checkpoint, to_dispatch_again
from search.config import CampaignConfig
from search.feed import INBOX, Feed, Island, Pending, build_proposers, default_cores, not_run, result_of_row, tell
from search.island_view import IslandView
from search.population import Population
from search.protocol import Dispatch
from search.schema import Placement, row_from_result
from search.throughput import Throughput

__all__ = ["INBOX", "Campaign", "Island", "Progress", "build_proposers", "cost_rank"]

log = logging.getLogger(__name__)
COMPACT_PARTS = 256     # journal parts of one row each merged at once
COMPACT_ROWS = 4096     # a part this large is never merged again, so each row is rewritten a few times at most


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
    throughput: dict[str, Any] = dataclasses.field(default_factory=dict)   # see search.throughput
    llm: dict[str, Any] = dataclasses.field(default_factory=dict)   # candidates, from_guidance, tokens, cost_usd


class Campaign:
    """One campaign directory driven to its budget. Use ``run``; it resumes when the directory has a checkpoint.

    ``local=True`` runs without Ray: the evaluations run in this process's threads (``search.local_dispatch``)
    unless ``dispatcher_factory`` gives another dispatcher."""

    def __init__(self, cfg: CampaignConfig, out_dir: Path, *, address: str | None = None,
                 on_progress: Callable[[Progress], None] | None = None, dispatcher_factory: Callable | None = None,
                 local: bool = False):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.address = address
        self.local = local
        self.on_progress = on_progress or (lambda p: None)
        self.dispatcher_factory = dispatcher_factory
        self.cache_dir = cfg.campaign.cache_dir(self.out)    # None: each evaluating node's own cache
        self.islands = [Island(str(f), spec.scale, t.hardware)
                        for spec in cfg.problems for f in spec.files for t in cfg.targets]
        self.progress = Progress(budget=cfg.budget.max_evaluations)
        self.pending: dict[str, Pending] = {}     # eval_key -> candidate and placement, until appended
        self.throughput = Throughput()

    # state -------------------------------------------------------------------------------------------------------
    def _checkpoint(self, proposers, rng: random.Random, feed: Feed, elapsed: float) -> None:
        save_checkpoint(self.out, Checkpoint(
            generations={"campaign": feed.generation(), **{f"cursor@{hw}": c for hw, c in feed.cursors.items()}},
            proposer_states={f"{spec.name}@{hw}": p.get_state() for hw, ps in proposers.items() for spec, p in ps},
            in_flight={k: v.to_dict() for k, v in self.pending.items()}, rng_state=rng_state(rng), elapsed_s=elapsed,
            **_llm_spend(self.out)))

    def _request(self, island: Island, cand: Candidate) -> EvalRequest:
        # baselines once per candidate here; export re-measures with two rounds
        return self.cfg.bench_request(island.problem_path, cand.source, island.hardware, island.scale,
                                      self.cache_dir, rounds=1)

    def _submit_unsent(self, dispatcher, sent: set[str]) -> None:
        """Submit every pending evaluation not yet sent. Where a device holds several evaluations at once (a GPU's
        verify slots and builds ahead), a problem's n-th evaluation waiting or under way is sent behind every other
        problem's earlier ones (``spread_rank``), then cheap candidates first (``cost_rank``)."""
        ranks: dict[Island, int] = {}
        for key in sent:
            if key in self.pending:
                island = self.pending[key].island
                ranks[island] = ranks.get(island, 0) + 1
        for key, item in self.pending.items():
            if key in sent:
                continue
            hw = item.island.hardware
            rank = ranks.get(item.island, 0) if self._spreads(hw) else 0
            ranks[item.island] = rank + 1
            dispatcher.submit(key, self._request(item.island, item.candidate), hw,
                              priority=SPREAD_STEP * rank + cost_rank(item.candidate))

    def _spreads(self, hardware: str) -> bool:
        """Whether the work for ``hardware`` is spread over problems: its devices verify several at once."""
        return self.cfg.verify_slots(hardware) > 1

    def _view(self, population: Population, island: Island) -> IslandView:
        # no build folder for candidates to name in their source: each builds in its child's own caches (a shared
        # one would let a candidate plant an extension for a later one; evaluators/sandbox.py, SECURITY.md)
        return IslandView(population, island.problem_path, island.hardware, cache_dir=None, cores=default_cores(),
                          hardwares=tuple(t.hardware for t in self.cfg.targets),
                          near_duplicate=self.cfg.evolution.near_duplicate, max_parents=self.cfg.evolution.parents,
                          pool=self.cfg.evolution.population_per_island)

    def _feed(self, proposers, ck: Checkpoint | None) -> Feed:
        gens = dict(ck.generations) if ck else {}
        cursors = {}
        for hw in dict.fromkeys(i.hardware for i in self.islands):
            n = sum(1 for i in self.islands if i.hardware == hw)
            # a checkpoint from before the rotation counted whole generations
            cursors[hw] = gens.get(f"cursor@{hw}", gens.get("campaign", 0) * n)
        return Feed(self.cfg, self.islands, proposers, self._view, cursors)

    # running -----------------------------------------------------------------------------------------------------
    def run(self) -> Progress:
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
                self._replay(population, proposers, ck)
            rng = restore_rng(ck.rng_state) if ck and ck.rng_state else random.Random(self.cfg.campaign.seed)
            feed = self._feed(proposers, ck)
            elapsed0 = ck.elapsed_s if ck else 0.0
            self.pending = {k: Pending.from_dict(v) for k, v in to_dispatch_again(ck, population).items()}
            self.throughput = Throughput.from_table(population.table)
            if ck is not None:
                log.info("resuming at generation %d with %d evaluations in the journal and %d to send again",
                         feed.generation(), len(population), len(self.pending))
            if not self.local:
                from cluster.runtime import ensure_ray
                ray_handle = ensure_ray(self.address, temp_dir=_ray_temp_dir(self.out))
            old_sigterm = _sigterm_as_interrupt()    # after ray.init, which installs its own; restored below
            dispatcher = self._dispatcher()
            self._submit_unsent(dispatcher, set())
            self._loop(population, proposers, dispatcher, rng, feed, elapsed0)
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

    def _dispatcher(self) -> Dispatch:
        if self.dispatcher_factory is not None:
            return self.dispatcher_factory(self.cfg)
        slots = {t.hardware: self.cfg.verify_slots(t.hardware) for t in self.cfg.targets}
        ahead = {t.hardware: self.cfg.build_ahead(t.hardware) for t in self.cfg.targets}
        if self.local:
            from evaluators.hardware import detect_devices
            from evaluators.pipeline import evaluate, precheck
            from search.local_dispatch import LocalDispatcher
            found = {d.hw_class for d in detect_devices()}
            # one device per class: the evaluator addresses a GPU by its kind ("cuda"), i.e. the first one
            return LocalDispatcher({t.hardware: int(t.hardware in found) for t in self.cfg.targets}, evaluate,
                                   precheck, slots=slots, build_ahead=ahead,
                                   timeout_s=self.cfg.verify.timeout_s * 4, retries=2,
                                   precheck_workers=default_cores())
        from cluster.dispatch import Dispatcher
        return Dispatcher([t.hardware for t in self.cfg.targets], "evaluators.pipeline:evaluate",
                          "evaluators.pipeline:precheck", timeout_s=self.cfg.verify.timeout_s * 4,
                          retries=2, wait_s=max(t.wait_s for t in self.cfg.targets), verify_slots=slots,
                          build_ahead=ahead)

    def _ahead(self, dispatcher) -> dict[str, int]:
        """How many evaluations to keep submitted per class: twice what its devices hold, so that a freed slot never
        waits on the proposers; where the work is spread over problems, at least enough islands' worth (one visit
        brings up to every proposer's ``per_generation``) that each evaluation held can be of a problem of its own."""
        have = dispatcher.capacity()
        per_island = sum(spec.per_generation for spec in self.cfg.proposers)
        out = {}
        for t in self.cfg.targets:
            held = max(1, have.get(t.hardware, 0)) * self.cfg.in_flight(t.hardware)
            out[t.hardware] = max(2 * held, held * per_island) if self._spreads(t.hardware) else 2 * held
        return out

    def _top_up(self, population: Population, dispatcher, feed: Feed, rng: random.Random) -> int:
        """Ask the proposers for work for every class whose queue ahead is short; returns how many were added."""
        room = self.cfg.budget.max_evaluations - len(population) - len(self.pending)
        waiting: dict[str, int] = {}
        for item in self.pending.values():
            waiting[item.island.hardware] = waiting.get(item.island.hardware, 0) + 1
        seen = set(self.pending)
        new: list[Pending] = []
        for hw, ahead in self._ahead(dispatcher).items():
            want = min(ahead - waiting.get(hw, 0), room - len(new))
            if want > 0:
                new += feed.next(population, hw, want, seen)
        rng.shuffle(new)
        for item in new[:max(0, room)]:
            self.pending[item.key] = item
        # asked past the budget: never sent, so logged and closed with the proposers
        self._not_run(new[max(0, room):], feed.proposers, "not sent: the evaluation budget was reached")
        return min(len(new), max(0, room))

    def _loop(self, population, proposers, dispatcher, rng, feed: Feed, elapsed0) -> None:
        budget = self.cfg.budget
        started = time.monotonic()
        elapsed = lambda: elapsed0 + time.monotonic() - started  # noqa: E731
        p = self.progress
        p.done = len(population)
        self._refresh(population, p)
        exhausted = False          # the last top-up found nothing new; cleared by every result
        while True:
            time_left = budget.max_minutes * 60 - elapsed()
            room = budget.max_evaluations - len(population) - len(self.pending)
            can_propose = time_left > 0 and room > 0 and any(feed.turns_left(hw) for hw in feed.rings)
            if can_propose and not exhausted and self._short(dispatcher):
                added = self._top_up(population, dispatcher, feed, rng)
                exhausted = self._short(dispatcher)     # the proposers have no more for now
                if added:
                    # the checkpoint names what is about to be sent before it is sent
                    self._checkpoint(proposers, rng, feed, elapsed())
                    self._submit_unsent(dispatcher, dispatcher.in_flight())
                p.generation = feed.generation()
            if not self.pending:
                p.note = "search exhausted: no proposer has anything new" if can_propose else "budget reached"
                break
            for key, hw, result in dispatcher.poll(timeout=1.0):
                self._record(population, proposers, key, result)
                exhausted = False
                self._checkpoint(proposers, rng, feed, elapsed())
                p.done, p.in_flight, p.elapsed_s = len(population), len(self.pending), elapsed()
                self._refresh(population, p)
                p.eta_s = self._eta(p, time_left)
                self.on_progress(p)
            if self.pending and budget.max_minutes * 60 - elapsed() <= 0:
                self._withdraw_unstarted(dispatcher, proposers, rng, feed, elapsed())
            p.in_flight, p.elapsed_s = len(self.pending), elapsed()
            p.throughput = self.throughput.summary(elapsed(), dispatcher.capacity())
            self.on_progress(p)
        p.throughput = self.throughput.summary(elapsed(), dispatcher.capacity())
        self._checkpoint(proposers, rng, feed, elapsed())

    def _short(self, dispatcher) -> bool:
        """Whether some class has fewer evaluations submitted than it should keep ahead."""
        waiting: dict[str, int] = {}
        for item in self.pending.values():
            waiting[item.island.hardware] = waiting.get(item.island.hardware, 0) + 1
        return any(waiting.get(hw, 0) < n for hw, n in self._ahead(dispatcher).items())

    def _withdraw_unstarted(self, dispatcher, proposers, rng, feed: Feed, elapsed: float) -> None:
        """The time budget is spent: what has not reached a device is not started (it is logged, and named in
        ``logs/not_started.jsonl``); what is running finishes and is recorded."""
        taken = dispatcher.withdraw()
        if not taken:
            return
        self._not_run([self.pending.pop(key) for key in taken], proposers,
                      "not started: the campaign's time budget was spent before it reached a device")
        log.info("time budget spent: %d queued evaluations not started (logs/not_started.jsonl); "
                 "%d running ones finish", len(taken), len(self.pending))
        self.progress.note = f"time budget spent: {len(taken)} queued not started"
        self._checkpoint(proposers, rng, feed, elapsed)

    def _not_run(self, items: list[Pending], proposers, reason: str) -> None:
        """Work proposed and never evaluated: named in ``logs/not_started.jsonl`` and told to the proposers as not
        run, so that nothing they asked for (an Optuna trial) stays open."""
        if not items:
            return
        with open(self.out / "logs" / "not_started.jsonl", "a") as f:
            for item in items:
                tell(proposers, item.island.hardware, item.candidate, not_run(reason, _torch_device(item)))
                f.write(json.dumps({"eval_key": item.key, "generation": item.generation,
                                    "island": dataclasses.asdict(item.island), "candidate_id": item.candidate.id,
                                    "proposer": item.candidate.proposer, "reason": reason}) + "\n")

    def _record(self, population: Population, proposers, key: str, result: EvalResult) -> None:
        item = self.pending.get(key)
        if item is None:
            log.warning("result for %s, which is not pending; ignored", key)
            return
        island, cand = item.island, item.candidate
        node = str((result.provenance.get("cluster") or {}).get("node_id", ""))
        where = Placement(campaign=self.cfg.campaign.name, problem_path=island.problem_path,
                          generation=item.generation, island=island.name, node_id=node, scale=island.scale)
        row = row_from_result(result, cand, where)
        population.append([row])   # the journal first, then the checkpoint
        # one part per evaluation; every COMPACT_PARTS small parts are merged into one, so that reading a
        # long campaign's journal opens tens of files, not thousands (a crash mid-merge leaves rows twice, which
        # every reader drops by eval_key)
        population.compact(min_parts=COMPACT_PARTS, target_rows=COMPACT_ROWS)
        del self.pending[key]
        self.throughput.add(row)
        log.info("%s %s %s", key, result.status.value, result.reason)
        tell(proposers, island.hardware, cand, result)

    @staticmethod
    def _replay(population: Population, proposers, ck: Checkpoint) -> None:
        """Evaluations the journal holds that the checkpoint still names in flight: the driver stopped between the
        append and the checkpoint, so the proposers' restored states never heard of them (an Optuna trial would
        stay RUNNING). They are told now; telling one twice is harmless (a finished trial is left as it is)."""
        done = [k for k, v in ck.in_flight.items() if v and k in population]
        if not done:
            return
        table = population.table
        rows = table.filter(pc.is_in(table.column("eval_key"), value_set=pa.array(done))).to_pylist()
        for row in rows:
            item = Pending.from_dict(ck.in_flight[row["eval_key"]])
            tell(proposers, item.island.hardware, item.candidate, result_of_row(row))
        log.info("told the proposers %d results recorded after the last checkpoint", len(rows))

    def _refresh(self, population: Population, p: Progress) -> None:
        p.statuses = dict(population.status_counts())
        if any(spec.kind == "llm" for spec in self.cfg.proposers):
            p.llm = {**population._cached("llm_counts", lambda: report_data.llm_counts(population.table)),
                     **_llm_spend(self.out)}
        best = population.best()
        p.best = {(r["problem_id"], r["hardware"]): r["speedup"] for r in best.to_pylist()
                  if r.get("speedup") is not None}

    @staticmethod
    def _eta(p: Progress, time_left: float) -> float | None:
        if p.done == 0 or p.elapsed_s <= 0:
            return None
        per_eval = p.elapsed_s / max(1, p.done)
        return max(0.0, min(time_left, (p.budget - p.done) * per_eval))


# A step of dispatch priority per evaluation of the same problem already waiting or under way, above every cost
# rank. Several evaluations of one problem whose data is large take the device's memory in turn while the device
# idles: on the H200 four of one ConvTranspose2d problem's evaluations in flight together waited up to 177 s each.
SPREAD_STEP = 8

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


def _torch_device(item: Pending) -> str:
    try:
        return device_kind(item.island.hardware)
    except ValueError:          # a class only a test's cluster knows
        return "cpu"


def _on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _sigterm_as_interrupt() -> Any:
    """SIGTERM (``timeout``, a batch scheduler) stops the campaign like Ctrl-C: the loop unwinds, the actors and
    the local Ray stop, and the directory resumes. Returns the handler it replaced, or None off the main thread,
    which cannot take signals."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def _llm_spend(out: Path) -> dict[str, Any]:
    """Tokens and cost the campaign's LLM proposers have spent, from their ledger (nothing when none ran). The
    live view and every checkpoint ask after each result; the ledger is read again only when it has changed."""
    try:
        st = (out / "llm" / "usage.jsonl").stat()
    except FileNotFoundError:
        return {}
    return dict(_ledger_totals(str(out), st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _ledger_totals(out: str, size: int, mtime_ns: int) -> tuple[tuple[str, Any], ...]:
    from proposers.llm.store import Ledger
    totals = Ledger(Path(out)).totals()
    return (("tokens", totals.tokens), ("cost_usd", round(totals.cost_usd, 6)))


def _ray_temp_dir(out: Path) -> str:
    # Ray's socket paths must stay short: a per-campaign folder under the system temp dir, not inside the campaign
    from cluster.tempdirs import short_temp_dir
    return short_temp_dir(str(out.resolve()))
