"""``LLMProposer``: an ideator, a coder and a fixer behind the ``Proposer`` interface.

``propose`` hands back the candidates its agents have finished for the view's problem, launches new work up to the
concurrency limit (fixes of its own rejected candidates first, then new code, from the ideator's ideas when that role
is on), and, when it has nothing ready but work in flight for that problem, waits for the first piece. Requests go
through the response cache (a resume replays, paying nothing twice) and the ledger (the campaign's token and cost
budget: once reached, no request is sent). A request launched and not yet answered is kept in the state, so a resume
sends the very same request again, and the cache answers it when it had been answered.

Every candidate's ``params["llm"]`` carries its provenance: role, model, the request key (``prompt_sha``), tokens,
cost, the idea, whether the idea came from guidance, and the fix round.
"""
from __future__ import annotations

import concurrent.futures as cf
import copy
import dataclasses
import hashlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evaluators.machine_specs import describe, machine_spec
from proposers.base import Candidate, Proposer, ProblemView, device_kind
from proposers.llm import prompts
from proposers.llm.clients import ChatError, ChatReply, ChatRequest, make_client
from proposers.llm.extract import NoCode, detect_backend, extract_code, space_manifest
from proposers.llm.guidance import read_guidance
from proposers.llm.store import Ledger, ResponseCache, cost_usd, price_for
from proposers.llm.tuning import SpaceTuner

log = logging.getLogger(__name__)

ROLES = ("ideator", "coder", "fixer")
DEFAULT_BACKENDS = {"cpu": ("torch", "cpp"), "cuda": ("triton", "cuda", "torch"), "mps": ("metal", "torch")}
# statuses a fixer cannot help with: a speedup held for a person, a problem that fails on its own
_NOT_FIXABLE = {"accepted", "suspect_speedup", "baseline_error"}


class BudgetSpent(RuntimeError):
    """The campaign's token or cost budget is reached; no request is sent."""


@dataclasses.dataclass
class _Job:
    problem_id: str
    task: dict[str, Any]              # JSON-able: what the job does, with its first request in full
    future: cf.Future


class LLMProposer(Proposer):
    name = "llm"

    def __init__(self, model: str = "claude-sonnet-4-5", provider: str = "anthropic", base_url: str | None = None,
                 concurrency: int = 4, roles: Sequence[str] = ROLES, backends: Sequence[str] | None = None,
                 ideas_per_call: int = 4, fix_rounds: int = 2, parents: int = 3, max_response_tokens: int = 8192,
                 temperature: float | None = None, max_retries: int = 4, timeout_s: float = 300.0,
                 price_input_per_mtok: float | None = None, price_output_per_mtok: float | None = None,
                 api_key_env: str | None = None, campaign_dir: str = ".", budget_tokens: int | None = None,
                 budget_cost_usd: float | None = None, guidance: str = "", tune_trials: int = 8,
                 env: Mapping[str, str] | None = None):
        unknown = set(roles) - set(ROLES)
        if unknown or "coder" not in roles:
            raise ValueError(f"llm roles must include 'coder' and be among {', '.join(ROLES)}; got {list(roles)}")
        self.model, self.roles, self.backends = model, tuple(roles), tuple(backends) if backends else None
        self.concurrency, self.ideas_per_call, self.fix_rounds = max(1, concurrency), ideas_per_call, fix_rounds
        self.parents, self.max_response_tokens, self.temperature = parents, max_response_tokens, temperature
        self.budget_tokens, self.budget_cost_usd, self.guidance = budget_tokens, budget_cost_usd, guidance
        self.campaign_dir = Path(campaign_dir)
        self.price = price_for(model, (price_input_per_mtok, price_output_per_mtok or 0.0)
                               if price_input_per_mtok is not None else None)
        self.client, self.off_reason = make_client(provider, os.environ if env is None else env, base_url=base_url,
                                                   max_retries=max_retries, timeout_s=timeout_s,
                                                   api_key_env=api_key_env)
        if self.client is None:
            log.warning(self.off_reason)
        elif self.price is None and provider == "anthropic":
            log.warning("llm proposer: no price known for model %r; cost counts as 0 (set price_input_per_mtok and "
                        "price_output_per_mtok)", model)
        self.cache, self.ledger = ResponseCache(self.campaign_dir), Ledger(self.campaign_dir)
        self._tuner = SpaceTuner(self.campaign_dir, tune_trials)
        self._pool: cf.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._jobs: list[_Job] = []
        self._spent_logged = False
        self.replayed = 0                                  # answers taken from the cache in this process
        # state (get_state/set_state)
        self._proposed: set[str] = set()
        self._sources: set[str] = set()
        self._fixes: dict[str, list[dict[str, Any]]] = {}   # problem -> fix tasks not yet launched
        self._ideas: dict[str, list[dict[str, Any]]] = {}   # problem -> ideas not yet coded
        self._attempts: dict[str, int] = {}
        self._restored: dict[str, list[dict[str, Any]]] = {}  # problem -> tasks in flight when the state was saved

    # ---- requests ----------------------------------------------------------------------------------------------

    def budget_reached(self) -> str:
        """Why no request may be sent (empty when one may)."""
        t = self.ledger.totals()
        if self.budget_tokens is not None and t.tokens >= self.budget_tokens:
            return f"token budget reached ({t.tokens} of {self.budget_tokens} tokens in {t.requests} requests)"
        if self.budget_cost_usd is not None and t.cost_usd >= self.budget_cost_usd:
            return f"cost budget reached (${t.cost_usd:.4f} of ${self.budget_cost_usd:.4f})"
        return ""

    def _call(self, request: ChatRequest) -> tuple[ChatReply, float, bool]:
        cached = self.cache.get(request.key)
        if cached is not None:
            with self._lock:
                self.replayed += 1
            log.info("llm %s: replayed the cached answer to request %s (no new request)", request.role,
                     request.key[:12])
            return cached, cost_usd(cached, self.price), True   # what it cost when it was paid for
        why = self.budget_reached()
        if why:
            raise BudgetSpent(why)
        reply = self.client.complete(request)
        cost = cost_usd(reply, self.price)
        self.ledger.record(request, reply, cost)      # counted before cached: a kill between pays twice, never free
        self.cache.put(request, reply)
        return reply, cost, False

    def _request(self, static: Sequence[str], prompt: str, role: str) -> ChatRequest:
        return ChatRequest(model=self.model, system=tuple(static), prompt=prompt, max_tokens=self.max_response_tokens,
                           temperature=self.temperature, role=role)

    # ---- context -----------------------------------------------------------------------------------------------

    def _static(self, view: ProblemView) -> tuple[str, ...]:
        spec = machine_spec(view.hardware, cores=view.cores)
        return prompts.static_prefix(view.problem_id, Path(view.problem_path).read_text(),
                                     describe(spec, view.hardware))

    def _context(self, view: ProblemView):
        parents = [prompts.Parent(s.candidate.id, s.candidate.backend, s.speedup, s.candidate.source,
                                  getattr(s, "profile", None)) for s in view.best(self.parents)]
        failures = [prompts.Failed(f.candidate.id, f.status, f.reason) for f in view.failures(5)]
        guidance = ([self.guidance] if self.guidance else []) + read_guidance(self.campaign_dir, view.problem_id)
        return parents, failures, guidance

    def _backends(self, view: ProblemView) -> tuple[str, ...]:
        return self.backends or DEFAULT_BACKENDS[device_kind(view.hardware)]

    # ---- propose -----------------------------------------------------------------------------------------------

    def propose(self, view: ProblemView, budget: int) -> list[Candidate]:
        if self.client is None or budget <= 0:
            return []
        pid = view.problem_id
        out = self._harvest(view, budget) + self._tuned(view, budget)
        tasks = self._restored.pop(pid, [])
        while len(out) + self._in_flight(pid) + len(tasks) < budget and self._in_flight() + len(tasks) < self.concurrency:
            task = self._next_task(view)
            if task is None:
                break
            tasks.append(task)
        for task in tasks:
            self._launch(pid, task)
        if not out and self._in_flight(pid):
            cf.wait([j.future for j in self._jobs if j.problem_id == pid], return_when=cf.FIRST_COMPLETED)
            out = self._harvest(view, budget)
        return out

    def _tuned(self, view: ProblemView, budget: int) -> list[Candidate]:
        """Points of accepted candidates' SPACE manifests, from Optuna: no request needed."""
        out: list[Candidate] = []
        while len(out) < budget:
            points = self._tuner.ask(view.problem_id, view.hardware)
            if not points:
                break
            for source, point, meta, parent, ref in points:
                cand = self._candidate(view, {"source": source, "parent_ids": [parent],
                                              "meta": {**meta, "role": "tuner", "point": point}})
                if cand is not None:
                    self._tuner.remember(cand.id, ref)
                    out.append(cand)
        return out[:budget]

    def _in_flight(self, pid: str | None = None) -> int:
        return sum(1 for j in self._jobs if pid is None or j.problem_id == pid)

    def _next_task(self, view: ProblemView) -> dict[str, Any] | None:
        pid = view.problem_id
        if self._fixes.get(pid):
            fix = self._fixes[pid].pop(0)
            prompt = prompts.fixer_prompt(fix["source"], fix["status"], fix["reason"], fix["flags"],
                                          round=fix["round"], rounds=self.fix_rounds)
            return {"kind": "fix", "request": dataclasses.asdict(self._request(self._static(view), prompt, "fixer")),
                    "meta": {"role": "fixer", "fix_round": fix["round"], "idea": fix.get("idea", ""),
                             "from_guidance": fix.get("from_guidance", False)},
                    "parent_ids": [fix["candidate_id"]]}
        why = self.budget_reached()
        if why:
            if not self._spent_logged:
                log.warning("llm proposer stops: %s", why)
                self._spent_logged = True
            return None
        parents, failures, guidance = self._context(view)
        idea = {"idea": "", "backend": self._backends(view)[self._attempts.get(pid, 0) % len(self._backends(view))],
                "from_guidance": bool(guidance)}
        if "ideator" in self.roles:
            if not self._ideas.get(pid):
                self._ideas[pid] = self._ideate(view, parents, failures, guidance)
            if not self._ideas.get(pid):
                return None
            idea = self._ideas[pid].pop(0)
        attempt = self._attempts.get(pid, 0) + 1
        self._attempts[pid] = attempt
        prompt = prompts.coder_prompt(parents, failures, guidance, backend=idea["backend"], idea=idea["idea"],
                                      attempt=attempt)
        return {"kind": "code", "request": dataclasses.asdict(self._request(self._static(view), prompt, "coder")),
                "meta": {"role": "coder", "fix_round": 0, **idea, "guidance": guidance},
                "parent_ids": [p.candidate_id for p in parents[:1]]}

    def _ideate(self, view, parents, failures, guidance) -> list[dict[str, Any]]:
        key = f"ideations:{view.problem_id}"
        self._attempts[key] = self._attempts.get(key, 0) + 1
        request = self._request(self._static(view), prompts.ideator_prompt(
            parents, failures, guidance, self.ideas_per_call, round=self._attempts[key]), "ideator")
        try:
            reply, _, _ = self._call(request)
        except (ChatError, BudgetSpent) as e:
            log.warning("llm ideator on %s: %s", view.problem_id, e)
            return []
        ideas = prompts.parse_ideas(reply.text, self._backends(view))
        for idea in ideas:
            idea["idea_key"] = request.key
            idea["from_guidance"] = idea["from_guidance"] and bool(guidance)
        if not ideas:
            log.warning("llm ideator on %s gave no idea lines; the coder picks its own", view.problem_id)
            ideas = [{"idea": "", "backend": self._backends(view)[0], "from_guidance": False}]
        return ideas

    def _launch(self, pid: str, task: dict[str, Any]) -> None:
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="llm")
        self._jobs.append(_Job(pid, task, self._pool.submit(self._run, task)))

    def _run(self, task: dict[str, Any]) -> dict[str, Any] | None:
        """One job: the task's request, then fixer rounds while the reply holds no usable module."""
        request = ChatRequest(**{**task["request"], "system": tuple(task["request"]["system"])})
        meta = dict(task["meta"], model=self.model, prompt_sha=request.key, input_tokens=0, output_tokens=0,
                    cache_read_tokens=0, cache_write_tokens=0, cost_usd=0.0)
        round_ = meta["fix_round"]
        try:
            while True:
                reply, cost, _ = self._call(request)   # a replay carries the same figures: the same candidate id
                for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
                    meta[k] += getattr(reply, k)
                meta["cost_usd"] += cost
                meta["model"] = reply.model
                try:
                    return {"source": extract_code(reply.text), "meta": meta, "parent_ids": task["parent_ids"]}
                except NoCode as e:
                    if "fixer" not in self.roles or round_ >= self.fix_rounds:
                        log.info("llm %s reply holds no usable module (%s); dropped", meta["role"], e)
                        return None
                    round_ += 1
                    meta["fix_round"] = round_
                    prompt = prompts.fixer_prompt(reply.text, "no_code", str(e), (), round=round_,
                                                  rounds=self.fix_rounds)
                    request = self._request(request.system, prompt, "fixer")
        except (ChatError, BudgetSpent) as e:
            log.warning("llm %s: %s", meta["role"], e)
            return None

    def _harvest(self, view: ProblemView, budget: int) -> list[Candidate]:
        out: list[Candidate] = []
        for job in [j for j in self._jobs if j.problem_id == view.problem_id and j.future.done()]:
            if len(out) >= budget:
                break
            self._jobs.remove(job)
            try:
                made = job.future.result()
            except Exception:  # a bug in a job must not end the campaign
                log.exception("llm job on %s failed", view.problem_id)
                continue
            if made is None:
                continue
            cand = self._candidate(view, made)
            if cand is not None:
                out.append(cand)
        return out

    def _candidate(self, view: ProblemView, made: dict[str, Any]) -> Candidate | None:
        source = made["source"]
        digest = hashlib.sha256(source.encode()).hexdigest()
        if digest in self._sources:
            return None
        self._sources.add(digest)
        meta = {k: v for k, v in made["meta"].items() if k != "backend"}
        meta["cost_usd"] = round(meta["cost_usd"], 8)
        params: dict[str, Any] = {"llm": meta}
        space = space_manifest(source)
        if space:
            params["space"] = space
        cand = Candidate(source=source, params=params, parent_ids=tuple(made["parent_ids"]), proposer=self.name,
                         backend=detect_backend(source), hardware=view.hardware, problem_id=view.problem_id)
        self._proposed.add(cand.id)
        return cand

    # ---- observe -----------------------------------------------------------------------------------------------

    def observe(self, results) -> None:
        for cand, result in results:
            if cand.id not in self._proposed:
                continue
            self._tuner.tell(cand.id, result)
            meta = (cand.params.get("llm") or {})
            if result.status.accepted and cand.params.get("space") and meta.get("role") != "tuner":
                self._tuner.adopt(cand, cand.params["space"])
            if "fixer" not in self.roles:
                continue
            status = result.status.value
            round_ = int(meta.get("fix_round", 0)) + 1
            if status in _NOT_FIXABLE or round_ > self.fix_rounds:
                continue
            self._fixes.setdefault(cand.problem_id, []).append({
                "candidate_id": cand.id, "source": cand.source, "status": status, "reason": result.reason,
                "flags": list(result.static_flags), "round": round_, "idea": meta.get("idea", ""),
                "from_guidance": bool(meta.get("from_guidance", False))})

    # ---- state -------------------------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        in_flight: dict[str, list[dict[str, Any]]] = {}
        for job in self._jobs:
            in_flight.setdefault(job.problem_id, []).append(job.task)
        for pid, tasks in self._restored.items():
            in_flight.setdefault(pid, []).extend(tasks)
        t = self.ledger.totals()
        return copy.deepcopy({"proposed": sorted(self._proposed), "sources": sorted(self._sources),
                              "fixes": self._fixes, "ideas": self._ideas, "attempts": self._attempts,
                              "in_flight": in_flight, "tuner": self._tuner.get_state(),
                              "usage": {"requests": t.requests, "tokens": t.tokens, "cost_usd": t.cost_usd}})

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._proposed = set(state.get("proposed", ()))
        self._sources = set(state.get("sources", ()))
        state = copy.deepcopy(dict(state))
        self._fixes = {k: list(v) for k, v in state.get("fixes", {}).items()}
        self._ideas = {k: list(v) for k, v in state.get("ideas", {}).items()}
        self._attempts = dict(state.get("attempts", {}))
        self._restored = {k: list(v) for k, v in state.get("in_flight", {}).items()}
        self._tuner.set_state(state.get("tuner") or {})
