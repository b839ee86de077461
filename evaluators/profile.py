"""Problem cost for the roofline: FLOPs counted on the reference, and the fewest bytes a call must move."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from evaluators import inputs as inp


def problem_cost(ref: Any) -> dict[str, float]:
    """FLOPs of one reference call and its minimal bytes (inputs read once, outputs written once, weights read)."""
    inputs, outputs = ref.run(ref.seed + 3)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        ref.model(*inputs)
    weights = sum(v.numel() * v.element_size() for v in ref.state_dict.values())
    return {"flops": float(counter.get_total_flops()),
            "bytes": float(inp.nbytes(inputs) + inp.nbytes(outputs) + weights)}
