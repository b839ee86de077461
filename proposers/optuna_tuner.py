"""``OptunaProposer``: tunes template parameters with Optuna, one study per (candidate family, hardware class).

A family is one template bound to one problem (``<problem_id>/<template>``). Studies live in the campaign directory,
in one Optuna journal file per hardware class (``studies/<hardware>.journal``), which workers and resumes share and
optuna-dashboard opens as it is. ``propose`` asks trials and renders each point as a candidate; ``observe`` tells
the value (the candidate's median time in ms, minimised, or its speedup, maximised; with ``sampler="nsga2"``, time
and the maximum relative error, both minimised). A point that cannot be rendered is told PRUNED at once; a rejected
or failed candidate is told FAIL. Trials not yet told are kept in the state by candidate id, so that a resumed
campaign tells them when their results arrive.
"""
from __future__ import annotations

import hashlib
import json
import logging
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from proposers.base import Candidate, Proposer, ProblemView, device_kind
from proposers.rewrites.problem import Problem, ProblemError
from proposers.templates import IntRange, InvalidPoint, Pow2, as_dim, bindings, template_module

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "cmaes", "nsga2", "random")
OWNER_ATTR = "kswarm_owner"
OBJECTIVES = ("time", "speedup")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def distributions(space: Mapping[str, Any]) -> dict[str, BaseDistribution]:
    """Optuna distributions of a template space: ordered dimensions become integer distributions (a power of two
    its exponent, named ``log2_<name>``), so that TPE and CMA-ES model their order; ``Choice`` is categorical."""
    out: dict[str, BaseDistribution] = {}
    for name, d in space.items():
        d = as_dim(d)
        if isinstance(d, Pow2):
            lo, hi = d.exponents
            out[f"log2_{name}"] = IntDistribution(lo, hi)
        elif isinstance(d, IntRange):
            out[name] = IntDistribution(d.low, d.high, log=d.log, step=d.step)
        else:
            out[name] = CategoricalDistribution(list(d.options))
    return out


def point_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """The template point of a trial's parameters (exponents back to powers of two)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if k.startswith("log2_"):
            out[k[5:]] = 2 ** int(v)
        else:
            out[k] = v
    return out


class OptunaProposer(Proposer):
    name = "optuna"

    def __init__(self, campaign_dir: str = ".", sampler: str = "tpe", objective: str = "time", seed: int = 0,
                 templates: Sequence[str] | None = None, max_pruned_per_ask: int = 20):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
        self.campaign_dir = pathlib.Path(campaign_dir)
        self.sampler_name = sampler
        self.objective = objective
        self.seed = seed
        self.templates = list(templates) if templates else None
        self.max_pruned_per_ask = max_pruned_per_ask
        self._studies: dict[str, optuna.Study] = {}
        self._storages: dict[str, JournalStorage] = {}
        self._pending: dict[str, list[list[Any]]] = {}   # candidate id -> [[study name, hardware, trial number]]
        self._told: dict[str, list[Any] | None] = {}     # candidate id -> told values (None: failed)
        self._proposed: set[str] = set()
        # Trials this configuration asked carry it as a user attribute, so that on resume it fails its own trials
        # left RUNNING by a dead process and leaves another optuna proposer's (sharing the study) alone.
        self.owner = hashlib.sha256(json.dumps([sampler, objective, seed, self.templates]).encode()).hexdigest()[:16]
        self._released: set[str] = set()

    # ---- studies -----------------------------------------------------------------------------------------------

    def journal_path(self, hardware: str) -> pathlib.Path:
        return self.campaign_dir / "studies" / f"{_safe(hardware)}.journal"

    def _storage(self, hardware: str) -> JournalStorage:
        if hardware not in self._storages:
            path = self.journal_path(hardware)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._storages[hardware] = JournalStorage(JournalFileBackend(str(path)))
        return self._storages[hardware]

    def _sampler(self, study_name: str) -> optuna.samplers.BaseSampler:
        seed = (self.seed * 1_000_003 + sum(map(ord, study_name))) % (2**31)
        if self.sampler_name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=5)
        if self.sampler_name == "cmaes":
            # ordered dimensions are modelled jointly; categorical ones fall back to the independent sampler
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        if self.sampler_name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)

    def study(self, study_name: str, hardware: str) -> optuna.Study:
        if study_name not in self._studies:
            if self.sampler_name == "nsga2":
                directions = ["minimize", "minimize"]
            else:
                directions = ["minimize" if self.objective == "time" else "maximize"]
            self._studies[study_name] = optuna.create_study(
                study_name=study_name, storage=self._storage(hardware), sampler=self._sampler(study_name),
                directions=directions, load_if_exists=True)
            self._release_orphans(self._studies[study_name])
        return self._studies[study_name]

    def _release_orphans(self, study: optuna.Study) -> None:
        """Tell FAIL the RUNNING trials of this configuration that no pending candidate will ever tell: asked by a
        process that died before the campaign's checkpoint recorded them. Constant-liar TPE would otherwise count
        them as pending forever. Runs once per study, when it is first opened (after ``set_state`` on a resume);
        the driver asks and tells in one thread, so no trial of this process is between ask and record here."""
        if study.study_name in self._released:
            return
        self._released.add(study.study_name)
        pending = {r[2] for refs in self._pending.values() for r in refs if r[0] == study.study_name}
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number in pending or t.user_attrs.get(OWNER_ATTR, self.owner) != self.owner:
                continue
            try:
                study.tell(t.number, state=TrialState.FAIL)
                log.info("optuna: %s trial %d was left running by a process that died; told FAIL",
                         study.study_name, t.number)
            except (ValueError, RuntimeError) as e:   # finished meanwhile
                log.debug("orphan %s trial %d: %s", study.study_name, t.number, e)

    # ---- ask ---------------------------------------------------------------------------------------------------

    def propose(self, view: ProblemView, budget: int) -> list[Candidate]:
        if budget <= 0:
            return []
        try:
            problem = Problem.from_path(view.problem_path)
            bound = bindings(problem, device_kind(view.hardware))
        except ProblemError as e:
            log.warning("optuna: %s", e)
            return []
        if self.templates is not None:
            bound = [(n, b) for n, b in bound if n in self.templates]
        out: list[Candidate] = []
        stalled = 0
        while len(out) < budget and bound and stalled < len(bound):
            stalled = 0
            for name, binding in bound:
                if len(out) >= budget:
                    break
                c = self._ask_one(view, problem, name, binding)
                if c is None:
                    stalled += 1
                else:
                    out.append(c)
            if stalled == len(bound):
                break
        return out

    def _ask_one(self, view: ProblemView, problem: Problem, template: str, binding: dict) -> Candidate | None:
        mod = template_module(template)
        family = f"{view.problem_id}/{template}"
        study_name = f"{family}@{view.hardware}"
        study = self.study(study_name, view.hardware)
        space = mod.space(binding, max(1, int(view.cores)))
        dists = distributions(space)
        for _ in range(self.max_pruned_per_ask):
            trial = study.ask(dists)
            trial.set_user_attr(OWNER_ATTR, self.owner)
            point = point_of(trial.params)
            try:
                source = mod.render(problem, binding, point, view.cache_dir)
            except InvalidPoint as e:
                study.tell(trial, state=TrialState.PRUNED)
                log.debug("pruned %s trial %d: %s", study_name, trial.number, e)
                continue
            params = {"template": template, "family": family, "point": point}
            if view.cache_dir:
                params["build_dir"] = view.cache_dir
            cand = Candidate(source=source, params=params, proposer=self.name, backend=mod.BACKEND,
                             hardware=view.hardware, problem_id=view.problem_id)
            ref = [study_name, view.hardware, trial.number]
            if cand.id in self._told:        # this point was measured before: tell the same result now
                self._tell(ref, self._told[cand.id])
                continue
            self._pending.setdefault(cand.id, []).append(ref)
            if cand.id in self._proposed:    # in flight already: its result will tell this trial too
                continue
            self._proposed.add(cand.id)
            return cand
        return None

    # ---- tell --------------------------------------------------------------------------------------------------

    def _values(self, result: Any) -> list[float] | None:
        if not result.status.accepted or result.candidate is None:
            return None
        ms = float(result.candidate.median_ms)
        if self.sampler_name == "nsga2":
            return [ms, float(result.max_rel_err or 0.0)]
        if self.objective == "speedup":
            return None if result.speedup is None else [float(result.speedup)]
        return [ms]

    def _tell(self, ref: Sequence[Any], values: list[float] | None) -> None:
        study_name, hardware, number = ref
        study = self.study(study_name, hardware)
        try:
            if values is None:
                study.tell(number, state=TrialState.FAIL)
            else:
                study.tell(number, values if len(values) > 1 else values[0])
        except (ValueError, RuntimeError) as e:  # already finished (told by another worker): nothing to do
            log.debug("tell %s trial %d skipped: %s", study_name, number, e)

    def observe(self, results) -> None:
        for cand, result in results:
            refs = self._pending.pop(cand.id, None)
            if refs is None:
                continue
            values = self._values(result)
            self._told[cand.id] = values
            for ref in refs:
                self._tell(ref, values)

    # ---- state -------------------------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        return {"pending": {k: [list(r) for r in v] for k, v in sorted(self._pending.items())},
                "told": dict(sorted(self._told.items())), "proposed": sorted(self._proposed),
                "hardware": sorted(self._storages)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._pending = {k: [list(r) for r in v] for k, v in state.get("pending", {}).items()}
        self._told = {k: (None if v is None else list(v)) for k, v in state.get("told", {}).items()}
        self._proposed = set(state.get("proposed", ()))
        # a resume: the studies this proposer had opened are opened now, which releases their orphaned trials
        for hardware in state.get("hardware", ()):
            storage = self._storage(hardware)
            for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
                if summary.study_name.endswith(f"@{hardware}"):
                    self.study(summary.study_name, hardware)
