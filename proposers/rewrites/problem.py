"""Loading a problem file and tracing its ``Model`` with torch.fx, on the meta device.

Tracing never allocates real weights or inputs: the model and its example inputs are built under
``torch.device("meta")``, so the large scales cost nothing. A problem whose forward cannot be traced yields ``None``
from ``trace_problem``; the rewrites then have nothing to work on and propose nothing.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import logging
import pathlib
import types
from typing import Any

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import ShapeProp

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


class _Tracer(fx.Tracer):
    """Buffers (masks, running statistics) stay symbolic so that the generated code reads them from the module.

    With ``proxy_scalars``, int and float attributes of the model's own (non-``torch.nn``) modules are read through
    ``get_attr`` nodes too (``self.num_heads``), so that sizes derived from the init arguments are not baked into
    the generated forward. A forward that branches on such a value cannot be traced this way; the caller retries
    without.
    """

    proxy_buffer_attributes = True

    def __init__(self, proxy_scalars: bool = False):
        super().__init__()
        self.proxy_scalars = proxy_scalars
        self._saved: list[tuple[torch.nn.Module, str, Any]] = []

    def create_args_for_root(self, root_fn, is_module, concrete_args=None):
        out = super().create_args_for_root(root_fn, is_module, concrete_args)
        if self.proxy_scalars and is_module:
            for name, mod in self.root.named_modules():
                if type(mod).__module__.startswith("torch.nn"):
                    continue
                for attr, val in list(vars(mod).items()):
                    if type(val) in (int, float) and not attr.startswith("_"):
                        proxy = self.create_proxy("get_attr", f"{name}.{attr}" if name else attr, (), {})
                        proxy.node.meta["value"] = val
                        mod.__dict__[attr] = proxy
                        self._saved.append((mod, attr, val))
        return out

    def trace(self, root, concrete_args=None):
        try:
            return super().trace(root, concrete_args)
        finally:
            for mod, attr, val in self._saved:
                mod.__dict__[attr] = val
            self._saved.clear()


class _ScalarShapeProp(ShapeProp):
    """Shape propagation that also records Python numbers (sizes, scales) in ``node.meta["value"]``."""

    def run_node(self, n):
        result = super().run_node(n)
        if type(result) in (int, float):
            n.meta["value"] = result
        return result


@dataclasses.dataclass
class Traced:
    """A problem's model traced at one scale: a meta-device GraphModule with tensor metadata on its nodes."""

    problem: Problem
    scale: str
    module: types.ModuleType
    model: torch.nn.Module
    gm: fx.GraphModule
    shapes_known: bool

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
    try:
        mod = problem.load(scale)
        with torch.device("meta"):
            model = mod.Model(*mod.get_init_inputs())
    except (ProblemError, Exception) as e:
        log.info("cannot build %s at scale %s: %s", problem.problem_id, scale, e)
        return None
    gm = None
    for proxy_scalars in (True, False):
        try:
            graph = _Tracer(proxy_scalars).trace(model)
            gm = fx.GraphModule(model, graph, class_name="Traced")
            break
        except Exception as e:  # fx raises many kinds for untraceable Python; all mean "no graph"
            log.info("cannot trace %s (scalars proxied: %s): %s: %s", problem.problem_id, proxy_scalars,
                     type(e).__name__, e)
    if gm is None:
        return None
    shapes_known = True
    try:
        _ScalarShapeProp(gm).propagate(*_meta_inputs(mod))
    except Exception as e:  # some ops have no meta kernel; rewrites that need shapes then decline
        log.info("no shapes for %s: %s: %s", problem.problem_id, type(e).__name__, e)
        shapes_known = False
    return Traced(problem, scale, mod, model, gm, shapes_known)


def node_shape(node: fx.Node) -> tuple[int, ...] | None:
    tm = node.meta.get("tensor_meta")
    if tm is None or not hasattr(tm, "shape"):
        return None
    return tuple(int(s) for s in tm.shape)
