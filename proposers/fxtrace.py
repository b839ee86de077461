"""Tracing a model with torch.fx as far as it goes: a GraphModule with shapes, or a one-line reason.

``trace_model(model, example_inputs) -> (GraphModule | None, reason)`` is the one entry point. It copes with what
real model code does:

- parameters of ``forward`` that ``example_inputs`` leave at their defaults are traced at those defaults (the
  graph asserts them), so ``if h0 is None:`` takes the branch the real call takes;
- annotations are dropped from the graph (fx would emit names such as ``_torch_Tensor_`` that no candidate defines);
- tensor factories called in ``forward`` (``torch.tensor(self.c)``, ``torch.zeros(x.size(0), n)``, ``torch.randn``)
  stay calls in the graph, so nothing computed at trace time (a constant, a fixed random draw) is baked into it;
- a condition on sizes or devices (``assert L == H * W``) is decided on the example inputs and guarded in the graph
  (``torch._assert``), so the graph is specialised to those sizes and raises on others;
- a submodule whose forward fx cannot trace (control flow on a tensor's value, a loop over a tensor, a state
  change) is kept opaque: one ``call_module`` node that runs its own forward. The trace is then partial and the
  reason names the opaque submodules. When the model's own forward cannot be traced, the result is ``None``;
- a forward that assigns attributes of a module (``self.h = ...``) changes state that the graph would drop; that
  module is kept opaque, or, for the root, nothing is traced.

Shapes come from running the graph on ``example_inputs`` (meta tensors are fine): each node's ``tensor_meta``, and
``meta["value"]`` for Python numbers (sizes, scales). ``gm.meta["shapes_known"]`` says whether that succeeded.
Int and float attributes of the model's own modules are read through ``get_attr`` nodes where the forward allows it
(``self.num_heads``), so that sizes derived from the init arguments are not baked into the graph.
"""
from __future__ import annotations

import inspect
import logging
import operator
import threading
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import ShapeProp

log = logging.getLogger(__name__)

# torch functions that build a tensor from Python values: recorded as calls, never evaluated while tracing
FACTORIES = ("tensor", "as_tensor", "scalar_tensor", "full", "zeros", "ones", "empty", "arange", "linspace",
             "logspace", "eye", "tril_indices", "triu_indices", "rand", "randn", "randint", "randperm", "normal")
_MAX_OPAQUE = 24


class _StateChange(Exception):
    """A traced forward assigned an attribute of a module."""


class Tracer(fx.Tracer):
    """fx's tracer with opaque submodules (``leaves``), factory calls kept, proxied scalars and a record of where a
    failure happened (``failed_in``: the innermost traced submodule, ``""`` for the root)."""

    proxy_buffer_attributes = True

    def __init__(self, proxy_scalars: bool = False, leaves: frozenset[str] = frozenset(),
                 example_inputs: Sequence[Any] | None = None):
        super().__init__()
        self.proxy_scalars = proxy_scalars
        self.leaves = leaves
        self.example_inputs = list(example_inputs) if example_inputs is not None else None
        self._values: dict[fx.Node, Any] = {}
        self._evaluating = False
        self.failed_in: str | None = None
        self._saved: list[tuple[torch.nn.Module, str, Any]] = []

    def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.leaves or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m, forward, args, kwargs):
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path):
            return super().call_module(m, forward, args, kwargs)
        before = dict(vars(m))
        try:
            out = super().call_module(m, forward, args, kwargs)
            _check_unchanged(m, before, path)
        except Exception:
            if self.failed_in is None:
                self.failed_in = path
            raise
        return out

    def create_args_for_root(self, root_fn, is_module, concrete_args=None):
        out = super().create_args_for_root(root_fn, is_module, concrete_args)
        if self.proxy_scalars and is_module:
            for name, mod in self.root.named_modules():
                if type(mod).__module__.startswith("torch.nn") or any(
                        name == leaf or name.startswith(leaf + ".") for leaf in self.leaves):
                    continue
                for attr, val in list(vars(mod).items()):
                    if type(val) in (int, float) and not attr.startswith("_"):
                        proxy = self.create_proxy("get_attr", f"{name}.{attr}" if name else attr, (), {})
                        proxy.node.meta["value"] = val
                        mod.__dict__[attr] = proxy
                        self._saved.append((mod, attr, val))
        return out

    def trace(self, root, concrete_args=None):
        originals = {name: getattr(torch, name) for name in FACTORIES if hasattr(torch, name)}
        for name, fn in originals.items():
            setattr(torch, name, self._recorded(fn))
        before = dict(vars(root)) if isinstance(root, torch.nn.Module) else None
        try:
            graph = super().trace(root, concrete_args)
            if before is not None:
                for mod, attr, val in self._saved:   # put the numbers back before comparing
                    mod.__dict__[attr] = val
                self._saved.clear()
                _check_unchanged(root, before, "")
            return graph
        except Exception:
            if self.failed_in is None:
                self.failed_in = ""
            raise
        finally:
            for name, fn in originals.items():
                setattr(torch, name, fn)
            for mod, attr, val in self._saved:
                mod.__dict__[attr] = val
            self._saved.clear()

    def to_bool(self, obj) -> bool:
        """A condition on sizes, dims or devices (``assert L == H * W``, ``if x.device != w.device``) is decided on
        the example inputs and guarded in the graph by ``torch._assert``, so another size raises instead of taking
        the traced branch silently. A condition on tensor values cannot be decided that way and stops the trace."""
        try:
            value = self._concrete(obj.node)
        except Exception:  # noqa: BLE001 - not decidable from shapes: fx's own refusal follows
            value = None
        if not isinstance(value, bool):
            return super().to_bool(obj)
        cond = obj if value else self.create_proxy("call_function", operator.not_, (obj,), {})
        self.create_proxy("call_function", torch._assert, (cond, "traced for other sizes or devices"), {})
        return value

    def _concrete(self, n: fx.Node) -> Any:
        """The value of ``n`` on the example inputs (meta tensors: sizes and devices, never data)."""
        if n in self._values:
            return self._values[n]
        if "value" in n.meta:
            return n.meta["value"]
        if n.op == "placeholder":
            names = [p.target for p in n.graph.nodes if p.op == "placeholder"]
            i = names.index(n.target)
            if self.example_inputs is None or i >= len(self.example_inputs):
                raise LookupError(n.target)
            value = self.example_inputs[i]
        else:
            args = fx.node.map_arg(n.args, self._concrete)
            kwargs = fx.node.map_arg(n.kwargs, self._concrete)
            if n.op == "get_attr":   # fx hands out proxies for parameters while tracing: read the dicts
                owner, _, leaf = n.target.rpartition(".")
                mod = self.root.get_submodule(owner) if owner else self.root
                for store in (mod._parameters, mod._buffers, mod.__dict__):
                    if leaf in store:
                        value = store[leaf]
                        break
                else:
                    raise LookupError(n.target)
            elif n.op == "call_function":
                value = n.target(*args, **kwargs)
            elif n.op == "call_method":
                value = getattr(args[0], n.target)(*args[1:], **kwargs)
            elif n.op == "call_module":
                mod = self.root.get_submodule(n.target)
                if next(mod.children(), None) is not None:   # its children's calls would be traced
                    raise LookupError(n.target)
                self._evaluating = True
                try:
                    value = mod.forward(*args, **kwargs)
                finally:
                    self._evaluating = False
            else:
                raise LookupError(n.op)
        if isinstance(value, fx.Proxy) or isinstance(value, torch.Tensor) and value.device.type != "meta":
            raise LookupError("not a meta value")
        self._values[n] = value
        return value

    def _recorded(self, fn):
        tracer, thread = self, threading.get_ident()

        def factory(*args, **kwargs):
            if threading.get_ident() != thread or tracer._evaluating:   # not a call of the traced forward
                return fn(*args, **kwargs)
            return tracer.create_proxy("call_function", fn, args, kwargs)

        factory.__name__ = fn.__name__
        return factory


def _check_unchanged(m: torch.nn.Module, before: dict[str, Any], path: str) -> None:
    # fx itself stores the constants it meets on the root as _tensor_constantN; those stay
    changed = [k for k, v in vars(m).items() if (k not in before or before[k] is not v)
               and not k.startswith("_tensor_constant")]
    for k in changed:   # undo, so that the model stays as it was built
        if k in before:
            m.__dict__[k] = before[k]
        else:
            del m.__dict__[k]
    if changed:
        where = f"{path}." if path else "self."
        raise _StateChange(f"forward assigns {where}{changed[0]}, a state change the graph would drop")


class _ScalarShapeProp(ShapeProp):
    """Shape propagation that also records Python numbers (sizes, scales) in ``node.meta["value"]``."""

    def run_node(self, n):
        result = super().run_node(n)
        if type(result) in (int, float):
            n.meta["value"] = result
        return result

    def call_module(self, target, args, kwargs):
        mod = self.fetch_attr(target)
        x = args[0] if args else None
        if isinstance(mod, torch.nn.RNNBase) and isinstance(x, torch.Tensor) and x.device.type == "meta" \
                and x.dim() >= 2:
            # a recurrent layer on meta tensors steps through every time step; one step gives the same shapes
            seq_dim = 1 if mod.batch_first and x.dim() == 3 else 0
            out, state = mod(x.narrow(seq_dim, 0, 1), *args[1:], **kwargs)
            shape = list(out.shape)
            shape[seq_dim] = x.shape[seq_dim]
            return torch.empty(shape, dtype=out.dtype, device="meta"), state
        return super().call_module(target, args, kwargs)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    return (first if isinstance(e, _StateChange) else f"{type(e).__name__}: {first}")[:300]


def defaults_not_given(model: torch.nn.Module, n_inputs: int) -> dict[str, Any]:
    """The forward's parameters that a call with ``n_inputs`` positional inputs leaves at their defaults."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    out = {}
    positional = 0
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and positional < n_inputs:
            positional += 1
            continue
        if p.default is not p.empty:
            out[p.name] = p.default
    return out


def _attempt(model: torch.nn.Module, proxy_scalars: bool, leaves: frozenset[str], concrete: dict[str, Any],
             example_inputs: Sequence[Any]):
    tracer = Tracer(proxy_scalars, leaves, example_inputs)
    try:
        graph = tracer.trace(model, concrete or None)
        for n in graph.nodes:   # fx renames a specialised parameter (h -> h_1); callers pass it by its own name
            if n.op == "placeholder" and n.target not in concrete and n.target.rsplit("_", 1)[0] in concrete:
                n.target = n.target.rsplit("_", 1)[0]
        return fx.GraphModule(model, graph, class_name="Traced"), "", None
    except Exception as e:  # fx raises many kinds for untraceable Python; all mean "no graph this way"
        return None, _one_line(e), tracer.failed_in


def _trace(model: torch.nn.Module, concrete: dict[str, Any],
           example_inputs: Sequence[Any]) -> tuple[fx.GraphModule | None, str]:
    first_reason = ""
    for proxy_scalars in (True, False):
        gm, reason, _ = _attempt(model, proxy_scalars, frozenset(), concrete, example_inputs)
        if gm is not None:
            return gm, ""
        first_reason = first_reason or reason
    # partial: keep each submodule that fails opaque, innermost first, until the rest traces
    leaves: list[str] = []
    reasons: list[str] = []
    for _ in range(_MAX_OPAQUE):
        gm, reason, failed_in = _attempt(model, False, frozenset(leaves), concrete, example_inputs)
        if gm is not None:
            detail = "; ".join(f"{leaf} ({r})" for leaf, r in list(zip(leaves, reasons))[:3])
            more = f"; and {len(leaves) - 3} more" if len(leaves) > 3 else ""
            return gm, f"partial trace, {len(leaves)} submodule(s) kept opaque: {detail}{more}"
        if not failed_in or failed_in in leaves:
            return None, f"forward of {type(model).__name__} cannot be traced: {reason or first_reason}"
        leaves.append(failed_in)
        reasons.append(reason)
    return None, f"more than {_MAX_OPAQUE} submodules of {type(model).__name__} cannot be traced"


def trace_model(model: torch.nn.Module, example_inputs: Sequence[Any]) -> tuple[fx.GraphModule | None, str]:
    """``model`` traced with torch.fx and its shapes propagated on ``example_inputs``.

    Returns ``(gm, "")`` for a complete trace, ``(gm, "partial trace, kept opaque: ...")`` when some submodules
    could only be kept as calls, and ``(None, reason)`` when nothing could be traced. ``gm.meta["shapes_known"]``
    is False (with ``gm.meta["shapes_reason"]``) when shape propagation failed; the graph is still usable.
    """
    gm, note = _trace(model, defaults_not_given(model, len(example_inputs)), example_inputs)
    if gm is None:
        return None, note
    for n in gm.graph.nodes:
        n.type = None          # annotations are not needed and do not survive code generation
    gm.recompile()
    try:
        _ScalarShapeProp(gm).propagate(*example_inputs)
        gm.meta["shapes_known"] = True
    except Exception as e:  # some ops have no meta kernel; users needing shapes then decline
        log.info("no shapes for %s: %s", type(model).__name__, _one_line(e))
        gm.meta["shapes_known"] = False
        gm.meta["shapes_reason"] = _one_line(e)
    return gm, note


__all__ = ["FACTORIES", "Tracer", "trace_model"]
