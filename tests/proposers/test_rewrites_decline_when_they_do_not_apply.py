"""A rewrite that does not apply returns nothing; it never emits an unchanged or wrong candidate."""
from __future__ import annotations

import pytest

from problems import make_problem
from proposers.rewrites.core import REWRITES, generate, rewrite_module, trace_all


def _graph_rewrites():
    return [n for n in REWRITES if n != "compile"]


def test_nonlinearity_between_linears_blocks_merging(tmp_path):
    p = make_problem(tmp_path, "relu_between", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(8, 8)
                self.b = nn.Linear(8, 4)

            def forward(self, x):
                return self.b(torch.relu(self.a(x)))
        """, "[torch.randn(2, 8)]")
    for name in ("linear_chain", "scale_bias_fold", "residual_fold", "reduce_reassoc", "algebraic"):
        assert generate(p, [name]) is None, name
        assert not rewrite_module(name).applies(trace_all(p)[0].gm)


def test_training_mode_batchnorm_is_not_folded(tmp_path):
    p = make_problem(tmp_path, "bn_train", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3)
                self.bn = nn.BatchNorm2d(4)

            def forward(self, x):
                return self.bn(self.conv(x))
        """, "[torch.randn(2, 3, 6, 6)]")
    assert generate(p, ["bn_fold"]) is None


def test_intermediate_with_another_use_is_kept(tmp_path):
    p = make_problem(tmp_path, "two_uses", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(8, 8)
                self.b = nn.Linear(8, 4)

            def forward(self, x):
                h = self.a(x)
                return self.b(h), h
        """, "[torch.randn(2, 8)]")
    assert generate(p, ["linear_chain"]) is None


@pytest.mark.parametrize("name", _graph_rewrites())
def test_no_rewrite_touches_a_plain_elementwise_model(tmp_path, name):
    p = make_problem(tmp_path, "gelu", """
        class Model(nn.Module):
            def forward(self, x):
                return F.gelu(x)
        """, "[torch.randn(4, 4)]")
    assert generate(p, [name]) is None


def test_untraceable_model_gets_only_the_compile_wrapper(tmp_path):
    p = make_problem(tmp_path, "branchy", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(4, 4)
                self.b = nn.Linear(4, 4)

            def forward(self, x):
                if x.sum() > 0:
                    return self.b(self.a(x))
                return x
        """, "[torch.randn(2, 4)]")
    assert generate(p, ["algebraic"]) is None
    src = generate(p, ["compile"], {"compile": {}})
    assert src is not None and "torch.compile(super().forward)" in src


def test_size_baked_into_the_graph_is_not_proposed(tmp_path):
    # a size held in a tuple attribute is read as a constant at trace time, so the code differs between scales
    p = make_problem(tmp_path, "baked", """
        class Model(nn.Module):
            def __init__(self, n):
                super().__init__()
                self.a = nn.Linear(n, n)
                self.b = nn.Linear(n, n)
                self.cfg = (n // 2,)

            def forward(self, x):
                return self.b(self.a(x)).reshape(-1, 2, self.cfg[0])
        """, "[torch.randn(2, n)]", init="[n]", sizes="n = 8", scales='{"large": {"n": 16}}')
    assert generate(p, ["linear_chain"]) is None
