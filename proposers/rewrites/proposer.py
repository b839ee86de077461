"""``RewritesProposer``: every applicable rewrite of the reference, alone and combined, eager and compiled.

Recipes are tried in a fixed order of expected value: the combination of all graph rewrites first (merged regions are
where the large wins are), compiled and not, then compiler variants of the reference, then each rewrite alone (a
fallback when a combination fails verification, and attribution when it does not). A recipe that changes nothing
yields nothing. The state is the set of proposed ids and the graph recipes whose eager form was rejected (their
compiled forms are not proposed again).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from proposers.base import Candidate, Proposer, ProblemView, device_kind
from proposers.rewrites import compile as compile_variants
from proposers.rewrites.core import REWRITES, generate_applied, trace_all
from proposers.rewrites.problem import Problem, ProblemError

log = logging.getLogger(__name__)

COMBINED = ("algebraic", "reduce_identity", "clone_elim", "pool_merge", "parallel_linears", "concat_linears", "sdpa")
SINGLES = ("linear_chain", "scale_bias_fold", "bn_fold", "norm_affine_fold", "residual_fold", "reduce_reassoc",
           "conv_pool_fold", "parallel_linears", "concat_linears", "sdpa", "avgpool_conv", "channels_last",
           "reduce_identity", "clone_elim", "pool_merge")
CPU_ONLY = ("cpp_fusion",)


def recipes(hardware: str, compile_limit: int = 4) -> list[tuple[tuple[str, ...], dict[str, Any] | None]]:
    """(graph rewrites, compile options or None) in the order they are proposed."""
    variants = compile_variants.variants(hardware, limit=compile_limit)
    default, others = variants[0], variants[1:]
    combined_layout = COMBINED + ("channels_last",)
    out: list[tuple[tuple[str, ...], dict[str, Any] | None]] = [
        (COMBINED, None), (COMBINED, default), (combined_layout, default),
    ]
    out += [(COMBINED, o) for o in others[:1]]
    out += [((), o) for o in others]
    out += [((s,), None) for s in SINGLES]
    if device_kind(hardware) == "cpu" and all(n in REWRITES for n in CPU_ONLY):
        out += [(CPU_ONLY, None), (("algebraic",) + CPU_ONLY, None)]
    out += [((s,), default) for s in SINGLES]
    out += [(COMBINED, o) for o in others[1:]] + [(combined_layout, None)]
    return out


def _key(graph: Sequence[str]) -> str:
    return "+".join(graph)


class RewritesProposer(Proposer):
    name = "rewrites"

    def __init__(self, compile_limit: int = 4):
        self.compile_limit = compile_limit
        self._proposed: set[str] = set()
        self._recipe_of: dict[str, str] = {}       # candidate id -> graph recipe key, for observe
        self._rejected: set[str] = set()           # graph recipes whose eager candidate was rejected

    def propose(self, view: ProblemView, budget: int) -> list[Candidate]:
        if budget <= 0:
            return []
        try:
            problem = Problem.from_path(view.problem_path)
            traces = trace_all(problem)
        except ProblemError as e:
            log.warning("rewrites: %s", e)
            return []
        out: list[Candidate] = []
        seen_sources: set[str] = set()
        for graph, opts in recipes(view.hardware, self.compile_limit):
            if len(out) >= budget:
                break
            if graph and _key(graph) in self._rejected:
                continue
            names = list(graph) + (["compile"] if opts is not None else [])
            params: dict[str, Any] = {"rewrites": names}
            if opts is not None:
                params["compile"] = opts
            if "cpp_fusion" in graph and view.cache_dir:
                params["build_dir"] = view.cache_dir
            try:
                result = generate_applied(problem, names, params, traces=traces if graph else None)
            except Exception:  # a rewrite bug must not stop the campaign: log it and go on
                log.exception("rewrite %s failed on %s", "+".join(names), view.problem_id)
                continue
            if result is None or result[0] in seen_sources:
                continue
            source, params["rewrites"] = result
            applied_graph = [n for n in params["rewrites"] if n != "compile"]
            if applied_graph and _key(applied_graph) in self._rejected:
                continue
            seen_sources.add(source)
            backend = "compile" if opts is not None else ("cpp" if "cpp_fusion" in graph else "torch")
            c = Candidate(source=source, params=params, proposer=self.name, backend=backend,
                          hardware=view.hardware, problem_id=view.problem_id)
            if c.id in self._proposed:
                continue
            self._proposed.add(c.id)
            if opts is None and applied_graph:
                self._recipe_of[c.id] = _key(applied_graph)
            out.append(c)
        return out

    def observe(self, results) -> None:
        for cand, result in results:
            key = self._recipe_of.pop(cand.id, None)
            if key is not None and not result.status.accepted:
                self._rejected.add(key)

    def get_state(self) -> dict[str, Any]:
        return {"proposed": sorted(self._proposed), "recipe_of": dict(sorted(self._recipe_of.items())),
                "rejected": sorted(self._rejected)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._proposed = set(state.get("proposed", ()))
        self._recipe_of = dict(state.get("recipe_of", {}))
        self._rejected = set(state.get("rejected", ()))
