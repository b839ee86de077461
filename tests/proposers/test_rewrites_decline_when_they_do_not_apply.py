"""A rewrite that does not apply returns nothing; it never emits an unchanged or wrong candidate."""
from __future__ import annotations

import textwrap

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



def _forward_only(body: str) -> str:
    return "class Model(nn.Module):\n    def forward(self, x):\n" + textwrap.indent(body, " " * 8) + "\n"


@pytest.mark.parametrize("body", [
    "h = x * 2.0\nh.add_(1.0)\nreturn h.sum(dim=1, keepdim=True).mean(dim=1)",   # in-place write
    "return (x * 2.0).mean(dim=0)",                                               # axis of size 3
    "v, i = torch.max(x * 2.0, dim=1)\nreturn v + i",                            # indices used
])
def test_reduction_that_is_not_an_identity_is_kept(tmp_path, body):
    p = make_problem(tmp_path, "not_identity", _forward_only(body), "[torch.randn(3, 1)]")
    assert generate(p, ["reduce_identity"]) is None


@pytest.mark.parametrize("pools", [
    "nn.MaxPool2d(3, stride=2), nn.MaxPool2d(2)",                    # overlapping windows
    "nn.MaxPool2d(2), nn.AvgPool2d(2)",                              # different kinds
    "nn.AvgPool2d(2, padding=1), nn.AvgPool2d(2)",                   # padding
    "nn.MaxPool2d(2, ceil_mode=True), nn.MaxPool2d(2)",              # ceil mode
])
def test_pools_that_do_not_compose_are_kept(tmp_path, pools):
    p = make_problem(tmp_path, "pools_kept", f"""
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.p = nn.Sequential({pools})

            def forward(self, x):
                return self.p(x)
        """, "[torch.randn(2, 3, 9, 9)]")
    assert generate(p, ["pool_merge"]) is None


@pytest.mark.parametrize("body", [
    "c = x.clone()\nx.mul_(2.0)\nreturn x + c",                    # the source is written in place
    "return x.clone()",                                              # the copy is the output
    "y = torch.relu(x)\nreturn y.clone().detach().view(-1)",        # a view of the copy is the output
])
def test_clone_that_is_needed_is_kept(tmp_path, body):
    p = make_problem(tmp_path, "clone_kept", _forward_only(body), "[torch.randn(3, 4)]")
    assert generate(p, ["clone_elim"]) is None
