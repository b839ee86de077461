"""Problem cost for the roofline: FLOPs counted on the reference, and the fewest bytes a call must move."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from evaluators import inputs as inp


def problem_cost(ref: Any) -> dict[str, float]:
    """FLOPs of one reference call, and the bytes any implementation must move: inputs read once and outputs
    written once. Weights are left out because a rewrite may shrink them (merged layers), and the FLOPs are
    reported but not used as a floor because a rewrite may remove them too."""
    inputs, outputs = ref.run(ref.seed + 3)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        ref.model(*inputs)
    weights = sum(v.numel() * v.element_size() for v in ref.state_dict.values())
    return {"flops": float(counter.get_total_flops()), "weight_bytes": float(weights),
            "bytes": float(inp.nbytes(inputs) + inp.nbytes(outputs))}
