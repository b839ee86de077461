"""CUDA graphs for launch-bound candidates: ``wrap(source)`` turns any candidate into one that replays its forward.

The wrapped ``ModelNew`` captures the inner forward once per input signature (shapes, dtypes, strides, device) into
a ``torch.cuda.CUDAGraph`` with static input buffers; every call copies the fresh inputs into those buffers, replays
the graph and returns a copy of the static output, so that outputs of earlier calls are never overwritten. Anything
the graph cannot hold runs the inner forward as it is: CPU inputs, autograd, non-tensor arguments, a training module.
Moving the module (``.to``, ``.cuda``) drops the captured graphs, which point at the old parameters.

``GraphsProposer`` (kind ``cuda_graphs``) proposes the wrapped form of a problem's best accepted candidates on
hardware classes whose device runs CUDA.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from proposers.backends import backend_runs
from proposers.base import Candidate, Proposer, ProblemView

log = logging.getLogger(__name__)

MARK = "# kernelswarm: cuda graph wrapper"
INNER = "_KsGraphInner"

_WRAPPER = '''

''' + MARK + '''
import torch as _ks_torch


def _ks_graph_out(o):
    if isinstance(o, _ks_torch.Tensor):
        return o.clone()
    if isinstance(o, (tuple, list)):
        return type(o)(_ks_graph_out(x) for x in o)
    return o


class ModelNew(''' + INNER + '''):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ks_graphs = {}

    def _apply(self, fn, *args, **kwargs):
        self.__dict__.setdefault("_ks_graphs", {}).clear()
        return super()._apply(fn, *args, **kwargs)

    def forward(self, *args):
        if (self.training or _ks_torch.is_grad_enabled() or not args
                or not all(isinstance(a, _ks_torch.Tensor) and a.is_cuda for a in args)):
            return super().forward(*args)
        key = tuple((tuple(a.shape), a.dtype, tuple(a.stride()), a.device) for a in args)
        entry = self._ks_graphs.get(key)
        if entry is None:
            static = [a.clone() for a in args]
            side = _ks_torch.cuda.Stream(device=args[0].device)
            side.wait_stream(_ks_torch.cuda.current_stream(args[0].device))
            with _ks_torch.cuda.stream(side):
                for _ in range(2):          # warm up: autotuning, lazy initialisation, allocator growth
                    super().forward(*static)
            _ks_torch.cuda.current_stream(args[0].device).wait_stream(side)
            graph = _ks_torch.cuda.CUDAGraph()
            with _ks_torch.cuda.graph(graph):
                out = super().forward(*static)
            entry = self._ks_graphs[key] = (graph, static, out)
        graph, static, out = entry
        for s, a in zip(static, args):
            s.copy_(a)
        graph.replay()
        return _ks_graph_out(out)
'''


class WrapError(ValueError):
    """The source defines no ``ModelNew`` class, or is already wrapped."""


def wrap(source: str) -> str:
    """``source`` with its ``ModelNew`` renamed and a CUDA-graph-replaying ``ModelNew`` subclass appended."""
    if MARK in source:
        raise WrapError("the candidate is already replayed through a CUDA graph")
    pattern = re.compile(r"^class\s+ModelNew\b", re.M)
    if len(pattern.findall(source)) != 1:
        raise WrapError("the candidate must define exactly one top-level class ModelNew")
    renamed = pattern.sub(f"class {INNER}", source)
    # later references to the class by name (super(ModelNew, self)) must reach the inner class
    renamed = re.sub(r"\bsuper\(\s*ModelNew\s*,", f"super({INNER},", renamed)
    return renamed.rstrip("\n") + "\n" + _WRAPPER


class GraphsProposer(Proposer):
    name = "cuda_graphs"

    def __init__(self, top: int = 3):
        self.top = top
        self._proposed: set[str] = set()

    def propose(self, view: ProblemView, budget: int) -> list[Candidate]:
        if budget <= 0:
            return []
        out: list[Candidate] = []
        for scored in view.best(self.top):
            c = scored.candidate
            if len(out) >= budget:
                break
            if not backend_runs(c.backend, view.hardware) or MARK in c.source:
                continue
            try:
                source = wrap(c.source)
            except WrapError as e:
                log.debug("cuda_graphs: %s: %s", c.id, e)
                continue
            params = {"cuda_graph": True, "inner": c.params.to_dict()}
            new = Candidate(source=source, params=params, parent_ids=(c.id,), proposer=self.name,
                            backend=c.backend, hardware=view.hardware, problem_id=view.problem_id)
            if new.id in self._proposed or not backend_runs("cuda", view.hardware):
                continue
            self._proposed.add(new.id)
            out.append(new)
        return out

    def get_state(self) -> dict[str, Any]:
        return {"proposed": sorted(self._proposed)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._proposed = set(state.get("proposed", ()))
