"""A copy the graph never needs removed: ``x.clone()`` read only by operations that make new tensors.

Applies to ``clone`` (method or ``torch.clone``, default memory format) when nothing in the graph writes in place
(no ``op_`` call, ``inplace=True`` or opaque submodule), so the copy and its source hold the same values for as long
as either is read, and neither the copy nor a view of it is returned (the output would then share memory with the
source). ``original = x.clone().detach(); ...; x + original`` then reads ``x`` directly: one full read and write of
the tensor fewer, and nothing else changes.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from proposers.rewrites import match

NAME = "clone_elim"


def _clones(gm: fx.GraphModule) -> list[fx.Node]:
    if match.mutates_in_place(gm):
        return []
    out = []
    for n in gm.graph.nodes:
        is_clone = (n.op == "call_method" and n.target == "clone") or (n.op == "call_function"
                                                                        and n.target is torch.clone)
        if not is_clone or len(n.args) != 1 or not isinstance(n.args[0], fx.Node):
            continue
        if n.kwargs.get("memory_format", torch.preserve_format) is not torch.preserve_format:
            continue
        if match.reaches_output_as_view(n):
            continue
        out.append(n)
    return out


def applies(gm: fx.GraphModule) -> bool:
    return bool(_clones(gm))


def transform(ctx) -> bool:
    clones = _clones(ctx.gm)
    if not clones:
        return False
    for n in clones:
        n.replace_all_uses_with(n.args[0])
    ctx.gm.graph.eliminate_dead_code()
    ctx.em.notes.append(f"{len(clones)} unneeded clone(s) removed")
    return True
