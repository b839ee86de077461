"""Problem cost for the roofline: FLOPs counted on the reference, and the fewest bytes a call must move.

Counted once per problem file, scale and device kind in the trusted process (the reference's own call under
``FlopCounterMode``), and kept beside the baseline records. The FLOPs bound a call's time from below only where no
honest rewrite can remove them: the reference does exactly one FLOP-bearing op (a GEMM, a convolution, attention)
and everything after it is elementwise (its output has as many elements as the model's). Two GEMMs may be merged
into one and a GEMM followed by a reduction may be folded into a smaller one, so there only the bytes bound holds.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from evaluators import inputs as inp
from evaluators.baseline import _atomic_write

log = logging.getLogger(__name__)
_MEMO: dict[str, dict[str, Any]] = {}


class _FlopOps(TorchDispatchMode):
    """The top-level calls of ops that FlopCounterMode counts, with their outputs' sizes and dtypes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in flop_registry:
            first = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(first, torch.Tensor):
                self.calls.append((str(func.overloadpacket), first.numel(), str(first.dtype).replace("torch.", "")))
        return out


def _count(ref: Any) -> dict[str, Any]:
    inputs = inp.make_inputs(ref.module, ref.seed + 3, ref.device)
    counter, ops = FlopCounterMode(display=False), _FlopOps()
    with torch.no_grad():
        with counter:
            ref.model(*inputs)
        with ops:
            out = ref.model(*inputs)
    items, _ = inp.flatten_outputs(out)
    out_numel = sum(t.numel() for t in items if isinstance(t, torch.Tensor))
    flops = float(counter.get_total_flops())
    weights = sum(v.numel() * v.element_size() for v in ref.state_dict.values())
    if len(ops.calls) == 1 and ops.calls[0][1] == out_numel and flops > 0:
        floor_flops, why = flops, f"one {ops.calls[0][0]} whose output is the model's, elementwise after it"
    elif not ops.calls:
        floor_flops, why = 0.0, "no FLOP-bearing op"
    elif len(ops.calls) > 1:
        floor_flops, why = 0.0, f"{len(ops.calls)} FLOP-bearing ops, which a rewrite may merge"
    else:
        floor_flops, why = 0.0, f"a {ops.calls[0][0]} followed by a reduction, which a rewrite may fold into it"
    return {"flops": flops, "floor_flops": floor_flops, "floor_flops_why": why,
            "flops_dtype": ops.calls[0][2] if ops.calls else "float32", "weight_bytes": float(weights),
            # the sizes the reference's inputs and outputs had when it was built (shapes do not depend on the seed)
            "bytes": float(ref.in_bytes + ref.out_bytes)}


def problem_cost(ref: Any, directory: Path | None = None) -> dict[str, Any]:
    """FLOPs of one reference call and those no implementation can skip (``floor_flops``, with why), and the
    bytes any implementation must move: inputs read once and outputs written once (weights are left out because a
    rewrite may shrink them). Cached in this process and, with ``directory``, on disk."""
    key = f"cost-{ref.info.source_hash}-{ref.info.scale}-{torch.device(ref.device).type}"
    if key in _MEMO:
        return dict(_MEMO[key])
    path = directory / f"{key}.json" if directory is not None else None
    if path is not None and path.is_file():
        try:
            _MEMO[key] = json.loads(path.read_text())
            return dict(_MEMO[key])
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable cost record %s: %s", path, e)
    cost = _count(ref)
    _MEMO[key] = cost
    if path is not None:
        _atomic_write(path, json.dumps(cost, sort_keys=True))
    return dict(cost)
