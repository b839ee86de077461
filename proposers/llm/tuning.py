"""The numbers of an LLM candidate's ``SPACE`` manifest, searched by Optuna: the LLM writes the structure, Optuna
sets the numbers.

When a candidate with a manifest is accepted, its family (the candidate, on one problem and hardware class) gets an
Optuna study in the campaign's ``studies/llm-<hardware>.journal``; each ``ask`` is a point of the manifest rendered
into the source (``extract.apply_point``), proposed as a candidate whose parent is the LLM's; its result is told
back (median time minimised; a rejection is a FAIL). Trials not yet told are kept by candidate id in the state.
"""
from __future__ import annotations

import logging
import pathlib
import re
from collections.abc import Mapping
from typing import Any

from proposers.llm.extract import apply_point

log = logging.getLogger(__name__)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


class SpaceTuner:
    def __init__(self, campaign_dir: pathlib.Path, trials: int, seed: int = 0):
        self.campaign_dir, self.trials, self.seed = pathlib.Path(campaign_dir), trials, seed
        self.families: dict[str, dict[str, Any]] = {}     # study name -> {source, space, parent, asked}
        self.pending: dict[str, list[Any]] = {}           # candidate id -> [study name, hardware, trial number]
        self._studies: dict[str, Any] = {}

    def _study(self, name: str, hardware: str):
        if name not in self._studies:
            import optuna
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend
            path = self.campaign_dir / "studies" / f"llm-{_safe(hardware)}.journal"
            path.parent.mkdir(parents=True, exist_ok=True)
            seed = (self.seed * 1_000_003 + sum(map(ord, name))) % (2**31)
            self._studies[name] = optuna.create_study(
                study_name=name, storage=JournalStorage(JournalFileBackend(str(path))), direction="minimize",
                sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4), load_if_exists=True)
        return self._studies[name]

    def adopt(self, cand, space: Mapping[str, list]) -> None:
        """An accepted candidate with a manifest opens a family to tune."""
        if self.trials <= 0 or not space:
            return
        name = f"{cand.problem_id}/{cand.id[:16]}@{cand.hardware}"
        self.families.setdefault(name, {"source": cand.source, "space": {k: list(v) for k, v in space.items()},
                                        "parent": cand.id, "hardware": cand.hardware, "problem": cand.problem_id,
                                        "asked": 0, "llm": dict(cand.params.get("llm") or {})})

    def ask(self, problem_id: str, hardware: str) -> list[tuple[str, dict[str, Any], dict[str, Any], str]]:
        """Points still to try for the problem's families: (source, point, llm meta, parent id) each, one per family."""
        from optuna.distributions import CategoricalDistribution
        out = []
        for name, fam in self.families.items():
            if fam["problem"] != problem_id or fam["hardware"] != hardware or fam["asked"] >= self.trials:
                continue
            study = self._study(name, hardware)
            trial = study.ask({k: CategoricalDistribution(v) for k, v in fam["space"].items()})
            fam["asked"] += 1
            try:
                source = apply_point(fam["source"], trial.params)
            except (ValueError, SyntaxError) as e:
                from optuna.trial import TrialState
                study.tell(trial, state=TrialState.PRUNED)
                log.info("llm tuner: %s cannot take %s: %s", name, trial.params, e)
                continue
            out.append((source, dict(trial.params), fam["llm"], fam["parent"], [name, hardware, trial.number]))
        return out

    def remember(self, cand_id: str, ref: list[Any]) -> None:
        self.pending[cand_id] = ref

    def tell(self, cand_id: str, result: Any) -> None:
        ref = self.pending.pop(cand_id, None)
        if ref is None:
            return
        from optuna.trial import TrialState
        name, hardware, number = ref
        study = self._study(name, hardware)
        try:
            if result.status.accepted and result.candidate is not None:
                study.tell(number, float(result.candidate.median_ms))
            else:
                study.tell(number, state=TrialState.FAIL)
        except (ValueError, RuntimeError) as e:     # already finished: nothing to do
            log.debug("llm tuner: tell %s %d skipped: %s", name, number, e)

    def get_state(self) -> dict[str, Any]:
        return {"families": self.families, "pending": self.pending}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.families = {k: dict(v) for k, v in (state.get("families") or {}).items()}
        self.pending = {k: list(v) for k, v in (state.get("pending") or {}).items()}
