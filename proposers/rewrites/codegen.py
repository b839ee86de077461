"""Rendering a rewritten graph as a self-contained ``ModelNew`` source.

The candidate embeds the problem's model source (without ``get_inputs``/``get_init_inputs``/``SCALES``) and defines
``class ModelNew(Model)``. Construction is the reference's, so the seeded parameters and the state dict keys are
identical and the evaluator's ``load_state_dict`` applies. Merged or folded weights live in non-persistent buffers
derived from the reference's parameters in ``__init__``, after every ``load_state_dict`` (a post hook) and after
``train``/``eval`` switches; never per forward call.
"""
from __future__ import annotations

import builtins
import dataclasses
import importlib
import json
import re
import textwrap
import types
from typing import Any

import torch
import torch.fx as fx

from proposers.rewrites.problem import Problem


class CodegenError(Exception):
    """The rewritten graph cannot be written as standalone Python (an unresolvable global)."""


# Helpers the derivation code may call; only those referenced are emitted into a candidate.
HELPERS: dict[str, str] = {
    "_ks_get": '''
def _ks_get(m, path):
    owner, _, leaf = path.rpartition(".")
    t = getattr(m.get_submodule(owner) if owner else m, leaf)
    if t is None or isinstance(t, (int, float)):
        return t
    return t.detach().double()
''',
    "_ks_raw": '''
def _ks_raw(m, path):
    owner, _, leaf = path.rpartition(".")
    return getattr(m.get_submodule(owner) if owner else m, leaf)
''',
    "_ks_device": '''
def _ks_device(m, name):
    # where the module lives now: the derived buffer's own device once it exists, else the first parameter's
    t = getattr(m, name, None)
    if t is not None:
        return t.device
    p = next(m.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
''',
    "_ks_mv": '''
def _ks_mv(w, c):
    # a 0-d c is a shift of every feature by the same amount
    return w.sum(1) * c if c.dim() == 0 else w @ c
''',
    "_ks_vec": '''
def _ks_vec(c, n, like):
    if c is None:
        return like.new_zeros(n)
    c = torch.as_tensor(c, dtype=torch.float64, device=like.device)
    return c.expand(n).clone() if c.dim() == 0 else c
''',
    "_ks_add_diag": '''
def _ks_add_diag(a, d):
    d = torch.as_tensor(d, dtype=a.dtype, device=a.device)
    return a + torch.diag(d.expand(a.shape[0]).clone())
''',
    "_ks_pool_kernel": '''
def _ks_pool_kernel(w, pool, step):
    # conv (stride `step`) then average pooling (window `pool`) is one conv whose kernel is w smeared over the window
    import itertools
    size = [k + s * (p - 1) for k, s, p in zip(w.shape[2:], step, pool)]
    out = w.new_zeros(*w.shape[:2], *size)
    for shift in itertools.product(*[range(p) for p in pool]):
        idx = tuple(slice(s * a, s * a + k) for a, s, k in zip(shift, step, w.shape[2:]))
        out[(slice(None), slice(None)) + idx] += w
    return out / math.prod(pool)
''',
    "_ks_ntuple": '''
def _ks_ntuple(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
''',
    "_ks_vsum": '''
def _ks_vsum(c, n):
    if c is None:
        return None
    return c.sum().reshape(1) if c.dim() else (c * n).reshape(1)
''',
}


@dataclasses.dataclass
class Emission:
    """What a rewrite adds to the candidate besides the new forward.

    ``derived`` maps an attribute name to the code computing it inside ``_ks_derive`` (``self`` is the module; tensors
    may be float64 and are cast to ``dtype_of``'s dtype); ``attrs`` are plain (non-tensor) derived attributes.
    """

    derived: dict[str, str] = dataclasses.field(default_factory=dict)
    dtype_of: dict[str, str] = dataclasses.field(default_factory=dict)
    attrs: dict[str, str] = dataclasses.field(default_factory=dict)
    eval_only: list[str] = dataclasses.field(default_factory=list)      # submodule paths that must be in eval mode
    init_lines: list[str] = dataclasses.field(default_factory=list)     # extra statements at the end of __init__
    prelude: list[str] = dataclasses.field(default_factory=list)        # module-level code (kernels, helpers)
    compile_options: dict[str, Any] | None = None
    memory_format: str | None = None                                    # "channels_last" for 4-D derived tensors
    notes: list[str] = dataclasses.field(default_factory=list)
    counter: int = 0

    def fresh(self, stem: str) -> str:
        name = f"_ks_{stem}{self.counter}"
        self.counter += 1
        return name


def param_ref(path: str) -> str:
    """Derivation code for a parameter or buffer of the reference model, in float64."""
    return f"_ks_get(self, {path!r})"


def _import_line(name: str, obj: Any, problem_module: str) -> str | None:
    if name == "torch" or name == "getattr":
        return None
    if name in ("inf", "nan"):
        return f"from math import {name}"
    if name == "NoneType":
        return "NoneType = type(None)"
    if name == "device":
        return "from torch import device"
    if isinstance(obj, types.ModuleType):
        return f"import {obj.__name__} as {name}" if obj.__name__ != name else f"import {name}"
    mod_name = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if mod_name == problem_module and qual and "." not in qual:
        return None if qual == name else f"{name} = {qual}"
    if mod_name is None and isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType)):
        mod_name = "torch" if hasattr(torch, obj.__name__) and getattr(torch, obj.__name__) is obj else None
    if mod_name and qual:
        for candidate_mod in (mod_name, "torch", "math", "operator", "builtins"):
            try:
                m = importlib.import_module(candidate_mod)
            except ImportError:
                continue
            target = m
            try:
                for part in qual.split("."):
                    target = getattr(target, part)
            except AttributeError:
                continue
            if target is obj:
                if candidate_mod == "builtins":
                    return None if qual == name else f"{name} = {qual}"
                if "." in qual:
                    return f"import {candidate_mod}\n{name} = {candidate_mod}.{qual}"
                return f"from {candidate_mod} import {qual} as {name}"
    if getattr(builtins, name, None) is obj:
        return None
    raise CodegenError(f"cannot import global {name!r} ({obj!r}) in generated code")


def forward_source(gm: fx.GraphModule, problem_module: str, name: str = "forward") -> tuple[str, list[str]]:
    """The graph's forward as a method named ``name`` (indented for a class body) and its import lines."""
    for n in gm.graph.nodes:
        n.type = None          # annotations would need their own imports (fx names them _torch_Tensor_)
    pc = gm.graph.python_code(root_module="self")
    src = pc.src
    # fx puts module-level statements (wrap() registrations) before the function: the method needs none of them
    src = src[src.index("def forward("):].strip("\n")
    src = re.sub(r"^def forward\(", f"def {name}(", src, count=1)
    imports = []
    for g, obj in pc.globals.items():
        if not re.search(rf"\b{re.escape(g)}\b", src):
            continue
        line = _import_line(g, obj, problem_module)
        if line:
            imports.append(line)
    return textwrap.indent(textwrap.dedent(src), "    "), imports


_MAX_CONSTANT = 4096


def constant_lines(gm: fx.GraphModule) -> list[str]:
    """``__init__`` statements re-creating the tensors fx stored while tracing (``_tensor_constantN``: a tensor
    the forward built from literals through a path the tracer does not record), as non-persistent buffers."""
    out = []
    for n in gm.graph.nodes:
        if n.op != "get_attr" or not n.target.startswith("_tensor_constant") or "." in n.target:
            continue
        t = getattr(gm, n.target, None)
        if not isinstance(t, torch.Tensor) or t.device.type == "meta" or t.numel() > _MAX_CONSTANT:
            raise CodegenError(f"forward builds a constant tensor ({n.target}) that cannot be written out")
        values = repr(t.tolist()).replace("nan", "math.nan").replace("inf", "math.inf")
        out.append(f"self.register_buffer({n.target!r}, torch.tensor({values}, dtype={t.dtype}), "
                   "persistent=False)")
    return out


def _signature(gm: fx.GraphModule) -> tuple[str, str]:
    """The forward's parameter list and the call forwarding them (placeholders in order)."""
    params, call = [], []
    for n in gm.graph.nodes:
        if n.op != "placeholder":
            continue
        name = n.target
        if name.startswith("*"):
            params.append(name)
            call.append(name)
        elif n.args:
            params.append(f"{name}={n.args[0]!r}")
            call.append(name)
        else:
            params.append(name)
            call.append(name)
    return ", ".join(["self", *params]), ", ".join(call)


def _compile_call(target: str, opts: dict[str, Any]) -> str:
    arg = f", options={json.dumps(opts, sort_keys=True)}" if opts else ""
    return f"torch.compile({target}{arg.replace('true', 'True').replace('false', 'False')})"


def render_wrapper(problem: Problem, em: Emission, title: str) -> str:
    """A candidate that compiles the reference forward as it is (no graph rewrite)."""
    assert em.compile_options is not None
    return "".join([
        f"# kernelswarm rewrite: {title}\n", problem.model_source(), "\n", "# ---- generated ----\n",
        "import torch\n\n\nclass ModelNew(Model):\n",
        "    def __init__(self, *args, **kwargs):\n",
        "        super().__init__(*args, **kwargs)\n",
        f"        self._ks_compiled = {_compile_call('super().forward', em.compile_options)}\n\n",
        "    def forward(self, *args, **kwargs):\n",
        "        return self._ks_compiled(*args, **kwargs)\n",
    ])


def render(problem: Problem, gm: fx.GraphModule, em: Emission, title: str) -> str:
    """The complete candidate source."""
    module_src = problem.model_source()
    fwd_name = "_ks_forward" if em.compile_options is not None or em.eval_only else "forward"
    body, imports = forward_source(gm, problem.module_name, fwd_name)
    derive_code = "\n".join(list(em.derived.values()) + list(em.dtype_of.values()) + list(em.attrs.values())
                            + em.init_lines + em.prelude)
    helpers = [src for name, src in HELPERS.items() if re.search(rf"\b{name}\b", derive_code)]   # none calls another

    out: list[str] = [f"# kernelswarm rewrite: {title}\n", module_src, "\n", "# ---- generated ----\n",
                      "import math\nimport torch\nimport torch.nn.functional\n"]
    out += [ln + "\n" for ln in dict.fromkeys(imports)]
    out += [textwrap.dedent(h).strip("\n") + "\n\n" for h in helpers]
    out += [p.rstrip("\n") + "\n\n" for p in em.prelude]

    derive_lines = []
    for name, code in em.derived.items():
        dtype_src = em.dtype_of.get(name)
        cast = f".to(dtype={dtype_src}.dtype)" if dtype_src else ""
        derive_lines.append(f"t = {code}")
        if em.memory_format == "channels_last":
            layout = "(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t.contiguous())"
        else:
            layout = "t.contiguous()"
        derive_lines.append(f"self.{name} = None if t is None else {layout}{cast}")
    for name, code in em.attrs.items():
        derive_lines.append(f"self.{name} = {code}")
    has_derive = bool(derive_lines)
    sig, call = _signature(gm)

    cls = ["\n\nclass ModelNew(Model):\n"]
    cls.append("    def __init__(self, *args, **kwargs):\n")
    cls.append("        super().__init__(*args, **kwargs)\n")
    if has_derive:
        for name in em.derived:
            cls.append(f"        self.register_buffer({name!r}, None, persistent=False)\n")
        cls.append("        self._ks_ready = True\n")
        cls.append("        self._ks_derive()\n")
        cls.append("        self.register_load_state_dict_post_hook(_ks_after_load)\n")
    for ln in constant_lines(gm) + em.init_lines:
        cls.append(textwrap.indent(ln.rstrip("\n"), "        ") + "\n")
    if em.compile_options is not None:
        cls.append(f"        self._ks_compiled = {_compile_call('self._ks_forward', em.compile_options)}\n")
    if has_derive:
        cls.append("\n    @torch.no_grad()\n    def _ks_derive(self):\n")
        cls += [f"        {ln}\n" for ln in derive_lines]
        cls.append("\n    def train(self, mode=True):\n")
        cls.append("        out = super().train(mode)\n")
        cls.append("        if getattr(self, '_ks_ready', False):\n")
        cls.append("            self._ks_derive()\n")
        cls.append("        return out\n")
    if em.compile_options is not None or em.eval_only:
        cls.append(f"\n    def forward({sig}):\n")
        if em.eval_only:
            cond = " or ".join(f"self.get_submodule({p!r}).training" for p in em.eval_only)
            cls.append(f"        if {cond}:\n")
            cls.append(f"            return super().forward({call})\n")
        target = "self._ks_compiled" if em.compile_options is not None else "self._ks_forward"
        cls.append(f"        return {target}({call})\n")
    cls.append("\n" + body + "\n")
    if has_derive:
        cls.append("\n\ndef _ks_after_load(module, incompatible_keys):\n    module._ks_derive()\n")
    return "".join(out) + "".join(cls)


__all__ = ["CodegenError", "Emission", "HELPERS", "param_ref", "render", "render_wrapper", "forward_source"]
