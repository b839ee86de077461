"""Elementwise chains fused into one C++/OpenMP kernel give the reference's values (slow: builds C++)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import build_pair, max_violation
from problems import make_problem
from proposers.rewrites.core import generate
from evaluators.static_checks import check_source

OPS = ["torch.relu({})", "torch.sigmoid({})", "torch.tanh({})", "F.gelu({})", "F.silu({})", "-{}",
       "F.leaky_relu({}, 0.2)", "({} * self.s)", "({} + self.t)", "({} / 3.0)", "(2.0 - {})", "({}).clamp(-1.0, 0.5)"]


@pytest.mark.slow
# one random chain after each head: each is a C++ build of half a minute or more on a loaded 2-core CI machine
@pytest.mark.parametrize("conv", [False, True], ids=["linear", "conv2d"])
@settings(max_examples=1, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chain=st.lists(st.sampled_from(OPS), min_size=2, max_size=5))
def test_fused_elementwise_chain_matches_reference(tmp_path_factory, conv, chain):
    tmp = tmp_path_factory.mktemp("fuse")
    expr = "self.head(x)"
    for op in chain:
        expr = op.format(expr)
    if conv:
        head, s, t, shape = "nn.Conv2d(3, 4, 3, padding=1)", "(4, 1, 1)", "(1, 4, 1, 1)", "2, 3, 5, 6"
    else:
        head, s, t, shape = "nn.Linear(6, 5)", "(5,)", "(1, 5)", "3, 6"
    p = make_problem(tmp, "chain", f"""
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.head = {head}
                self.s = nn.Parameter(torch.empty{s}.uniform_(0.5, 2.0))
                self.t = nn.Parameter(torch.randn{t})

            def forward(self, x):
                return {expr}
        """, f"[torch.randn({shape})]")
    src = generate(p, ["cpp_fusion"], {"build_dir": str(tmp / "build")})
    assert src is not None and "load_inline" in src
    assert check_source(src) == []
    ref, new, prob = build_pair(p.source, src)
    for seed in (0, 1):
        torch.manual_seed(seed)
        x = prob.get_inputs()
        with torch.no_grad():
            assert max_violation(ref(*x), new(*x)) <= 0


def test_single_op_is_not_fused(tmp_path):
    p = make_problem(tmp_path, "one", """
        class Model(nn.Module):
            def forward(self, x):
                return torch.relu(x)
        """, "[torch.randn(3, 4)]")
    assert generate(p, ["cpp_fusion"]) is None
