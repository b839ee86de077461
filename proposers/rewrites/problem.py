"""Loading a problem file and tracing its ``Model`` with torch.fx, on the meta device.

Tracing never allocates real weights or inputs: the model and its example inputs are built under
``torch.device("meta")``, so the large scales cost nothing. A problem whose forward cannot be traced yields ``None``
from ``trace_problem`` (``trace_problem_reason`` says why); the rewrites then have nothing to work on and propose
nothing. A forward that can be traced only in part (see ``proposers.fxtrace``) keeps the untraceable submodules as
opaque calls, and the rewrites work on the rest.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import logging
import pathlib
import threading
import types
from typing import Any

import torch
import torch.fx as fx

from proposers.fxtrace import trace_model

log = logging.getLogger(__name__)

# Top-level names of a problem file that a candidate must not carry: they describe the inputs, not the model.
_INPUT_NAMES = {"get_inputs", "get_init_inputs", "SCALES"}


class ProblemError(Exception):
    """The problem file cannot be loaded, built or traced."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """A problem file's text and where it came from."""

    path: str
    source: str

    @property
    def problem_id(self) -> str:
        return pathlib.Path(self.path).stem

    @property
    def module_name(self) -> str:
        return "_ks_problem_" + hashlib.sha256(self.source.encode()).hexdigest()[:12]

    @staticmethod
    def from_path(path: str | pathlib.Path) -> "Problem":
        p = pathlib.Path(path)
        try:
            return Problem(str(p), p.read_text())
        except OSError as e:
            raise ProblemError(f"cannot read problem {p}: {e}") from e

    def load(self, scale: str | None = None) -> types.ModuleType:
        """Execute the problem in a fresh module; ``scale`` overrides its module-level sizes from ``SCALES``."""
        mod = types.ModuleType(self.module_name)
        mod.__file__ = self.path
        try:
            exec(compile(self.source, self.path, "exec"), mod.__dict__)
        except Exception as e:  # a problem file is arbitrary code: any failure means "cannot load"
            raise ProblemError(f"cannot load problem {self.path}: {type(e).__name__}: {e}") from e
        if scale not in (None, "default"):
            scales = getattr(mod, "SCALES", {}) or {}
            if scale not in scales:
                raise ProblemError(f"problem {self.path} has no scale {scale!r}")
            for k, v in scales[scale].items():
                setattr(mod, k, v)
        for name in ("Model", "get_inputs", "get_init_inputs"):
            if not hasattr(mod, name):
                raise ProblemError(f"problem {self.path} defines no {name}")
        return mod

    def scales(self) -> list[str]:
        mod = self.load()
        return ["default", *sorted(getattr(mod, "SCALES", {}) or {})]

    def model_source(self) -> str:
        """The problem's source without the input-describing definitions, for embedding into a candidate."""
        tree = ast.parse(self.source)
        lines = self.source.splitlines(keepends=True)
        drop: list[tuple[int, int]] = []
        for node in tree.body:
            name = None
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = node.name
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                name = node.target.id
            elif isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
                name = "__main__"
            if name in _INPUT_NAMES or name == "__main__":
                start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
                drop.append((start, node.end_lineno or node.lineno))
        keep = [ln for i, ln in enumerate(lines, 1) if not any(a <= i <= b for a, b in drop)]
        return "".join(keep).rstrip() + "\n"


@contextlib.contextmanager
def _weights_on_meta():
    """Parameters and buffers go to the meta device as they are registered, while the rest of ``__init__`` runs on
    the CPU (for an ``__init__`` that reads a value, e.g. ``.item()`` of a ``linspace``, which meta cannot do)."""
    reg_param, reg_buffer = torch.nn.Module.register_parameter, torch.nn.Module.register_buffer
    thread = threading.get_ident()

    def register_parameter(self, name, param):
        if param is not None and param.device.type != "meta" and threading.get_ident() == thread:
            param = type(param)(param.detach().to("meta"), requires_grad=param.requires_grad)
        reg_param(self, name, param)

    def register_buffer(self, name, tensor, persistent=True):
        if tensor is not None and tensor.device.type != "meta" and threading.get_ident() == thread:
            tensor = tensor.to("meta")
        reg_buffer(self, name, tensor, persistent)

    torch.nn.Module.register_parameter, torch.nn.Module.register_buffer = register_parameter, register_buffer
    try:
        yield
    finally:
        torch.nn.Module.register_parameter, torch.nn.Module.register_buffer = reg_param, reg_buffer


def build_meta_model(mod: types.ModuleType, cls: type | None = None) -> torch.nn.Module:
    """The problem's ``Model`` (or ``cls``, e.g. a candidate's ``ModelNew``) built with the problem's init inputs
    and its weights on the meta device (nothing allocated for them)."""
    cls = cls or mod.Model
    try:
        with torch.device("meta"):
            return cls(*mod.get_init_inputs())
    except Exception:  # noqa: BLE001 - an __init__ that reads values: build on the CPU, weights still on meta
        with _weights_on_meta():
            return cls(*mod.get_init_inputs())


@dataclasses.dataclass
class Traced:
    """A problem's model traced at one scale: a meta-device GraphModule with tensor metadata on its nodes."""

    problem: Problem
    scale: str
    module: types.ModuleType
    model: torch.nn.Module
    gm: fx.GraphModule
    shapes_known: bool
    note: str = ""          # what a partial trace kept opaque; "" for a complete trace

    def fresh_graph_module(self) -> fx.GraphModule:
        """A copy of the traced graph that a rewrite may mutate (the meta model's submodules are shared)."""
        import copy
        graph = copy.deepcopy(self.gm.graph)
        for old, new in zip(self.gm.graph.nodes, graph.nodes):
            new.meta = dict(old.meta)
        return fx.GraphModule(self.model, graph, class_name="Traced")


def _meta_inputs(mod: types.ModuleType) -> list[Any]:
    with torch.device("meta"):
        return list(mod.get_inputs())


def trace_problem(problem: Problem, scale: str = "default") -> Traced | None:
    """Trace ``problem`` at ``scale`` on the meta device, or ``None`` (logged) if it cannot be traced."""
    traced, reason = trace_problem_reason(problem, scale)
    if traced is None:
        log.info("cannot trace %s at scale %s: %s", problem.problem_id, scale, reason)
    return traced


def trace_problem_reason(problem: Problem, scale: str = "default") -> tuple[Traced | None, str]:
    """``problem`` traced at ``scale`` on the meta device, or ``None`` and a one-line reason."""
    try:
        mod = problem.load(scale)
    except ProblemError as e:
        return None, str(e)
    try:
        model = build_meta_model(mod)
        inputs = _meta_inputs(mod)
    except Exception as e:  # a problem file is arbitrary code
        return None, f"cannot build Model on the meta device: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    gm, note = trace_model(model, inputs)
    if gm is None:
        return None, note
    return Traced(problem, scale, mod, model, gm, bool(gm.meta.get("shapes_known")), note), note


def node_shape(node: fx.Node) -> tuple[int, ...] | None:
    tm = node.meta.get("tensor_meta")
    if tm is None or not hasattr(tm, "shape"):
        return None
    return tuple(int(s) for s in tm.shape)
