"""channels_last memory format for convolution blocks.

Applies when the graph holds a 2-D convolution (``nn.Conv2d`` or ``F.conv2d``). Every 4-D input is converted to
channels_last on entry, 2-D convolution weights (and 4-D derived weights) are kept in channels_last, and every 4-D
output is returned in the standard contiguous format, so that the layout change is invisible from outside.
oneDNN and cuDNN then run the convolutions and the elementwise ops between them in NHWC.
"""
from __future__ import annotations


import torch
import torch.fx as fx

from proposers.rewrites import match
from proposers.rewrites.problem import node_shape

NAME = "channels_last"


def _has_conv2d(gm: fx.GraphModule) -> bool:
    for n in gm.graph.nodes:
        if match.kind(n, gm) == "conv":
            mod = match.module_of(n, gm)
            if isinstance(mod, torch.nn.Conv2d) or (mod is None and n.target in (torch.conv2d,
                                                                                    torch.nn.functional.conv2d)):
                return True
    return False


def applies(gm: fx.GraphModule) -> bool:
    return _has_conv2d(gm)


def transform(ctx) -> bool:
    gm = ctx.gm
    if not _has_conv2d(gm):
        return False
    graph = gm.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder" and len(node_shape(n) or ()) == 4]
    if not placeholders:
        return False
    for p in placeholders:
        with graph.inserting_after(p):
            cl = graph.call_method("contiguous", (p,), {"memory_format": torch.channels_last})
        p.replace_all_uses_with(cl, delete_user_cb=lambda u: u is not cl)
        cl.meta = dict(p.meta)
    out = next(n for n in graph.nodes if n.op == "output")

    def restore(v):
        if isinstance(v, fx.Node) and len(node_shape(v) or ()) == 4:
            with graph.inserting_before(out):
                return graph.call_method("contiguous", (v,))
        return v

    out.args = (fx.node.map_arg(out.args[0], restore),)
    ctx.em.memory_format = "channels_last"
    ctx.em.init_lines.append(
        "for _m in self.modules():\n"
        "    if isinstance(_m, torch.nn.Conv2d):\n"
        "        _m.weight.data = _m.weight.data.contiguous(memory_format=torch.channels_last)")
    ctx.em.notes.append("channels_last")
    return True
