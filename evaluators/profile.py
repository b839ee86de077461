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
    inputs = inp.make_inputs(ref.module, ref.seed + 3, ref.device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        ref.model(*inputs)
    weights = sum(v.numel() * v.element_size() for v in ref.state_dict.values())
    # the sizes the reference's inputs and outputs had when it was built (shapes do not depend on the seed)
    return {"flops": float(counter.get_total_flops()), "weight_bytes": float(weights),
            "bytes": float(ref.in_bytes + ref.out_bytes)}
