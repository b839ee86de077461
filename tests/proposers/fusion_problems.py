"""Random KernelBench-style problems for the fusion generator's tests: an anchor (a linear layer, a matmul with a
weight, a convolution or the input itself), a chain of elementwise steps, at most one row operation and steps after
it. ``problem_source(spec)`` writes the problem file; ``specs()`` is the hypothesis strategy of specs. The models
are meant to run in eval mode, as the evaluator runs them (BatchNorm on running statistics, Dropout the identity)."""
from __future__ import annotations

from hypothesis import strategies as st

UNARY = {
    "relu": "torch.relu(x)", "sigmoid": "torch.sigmoid(x)", "tanh": "torch.tanh(x)",
    "gelu": "torch.nn.functional.gelu(x)", "gelu_tanh": "torch.nn.functional.gelu(x, approximate='tanh')",
    "silu": "torch.nn.functional.silu(x)", "swish": "x * torch.sigmoid(x)", "mish": "torch.nn.functional.mish(x)",
    "leaky": "torch.nn.functional.leaky_relu(x, 0.1)", "hardtanh": "torch.nn.functional.hardtanh(x, -0.5, 0.5)",
    "hardswish": "torch.nn.functional.hardswish(x)", "softplus": "torch.nn.functional.softplus(x)",
    "clamp": "torch.clamp(x, min=-0.3, max=0.8)", "abs": "torch.abs(x)", "neg": "-x", "square": "x ** 2",
}
BINARY = {
    "add_bias": "x + self.bias", "mul_scale": "x * self.scale", "div_lit": "x / 2.5", "sub_t": "x - self.shift",
    "residual": "x + r", "max_t": "torch.max(x, self.floor)",
    "bn": "self.bn(x)", "dropout": "self.drop(x)",     # eval mode: running statistics; identity
}
AFTER_REDUCTION = {"mul_scale": "x * self.scale", "div_lit": "x / 2.5", "tanh": "torch.tanh(x)",
                   "relu": "torch.relu(x)", "gelu": "torch.nn.functional.gelu(x)"}
PIVOTS_2D = ["sum", "sum_keep", "mean", "amax", "max_values", "amin", "logsumexp", "softmax", "log_softmax",
             "layer_norm", "group_norm"]
PIVOTS_4D = ["sum", "amax", "softmax", "group_norm", "instance_norm", "spatial_mean", "spatial_mean_keep"]
REDUCING = {"sum", "sum_keep", "mean", "amax", "max_values", "amin", "logsumexp", "spatial_mean", "spatial_mean_keep"}


def _pivot_line(p: str) -> str:
    return {
        "sum": "x = torch.sum(x, dim=1)", "sum_keep": "x = x.sum(dim=1, keepdim=True)",
        "mean": "x = torch.mean(x, dim=1, keepdim=True)", "amax": "x = torch.amax(x, dim=1)",
        "max_values": "x = torch.max(x, dim=1, keepdim=True)[0]", "amin": "x = torch.amin(x, dim=1, keepdim=True)",
        "logsumexp": "x = torch.logsumexp(x, dim=1)", "softmax": "x = torch.softmax(x, dim=1)",
        "log_softmax": "x = torch.log_softmax(x, dim=1)", "layer_norm": "x = self.ln(x)", "group_norm": "x = self.gn(x)",
        "instance_norm": "x = self.inorm(x)",
        "spatial_mean": "x = torch.mean(x, dim=(2, 3))", "spatial_mean_keep": "x = x.mean(dim=[2, 3], keepdim=True)",
    }[p]


def problem_source(spec: dict) -> str:
    anchor, m, k, n, groups = spec["anchor"], spec["m"], spec["k"], spec["n"], spec["groups"]
    n = n * groups
    chan = "(n, 1, 1)" if anchor == "conv" else "(n,)"
    init = [f"self.bias = nn.Parameter(torch.randn{chan})", "self.scale = 1.7",
            "self.shift = nn.Parameter(torch.randn(1))", "self.floor = nn.Parameter(torch.full((1,), -0.2))",
            f"self.gn = nn.GroupNorm({groups}, n)", "self.ln = nn.LayerNorm(n)",
            "self.inorm = nn.InstanceNorm2d(n, affine=True)",
            f"self.bn = nn.BatchNorm{'2' if anchor == 'conv' else '1'}d(n)", "self.drop = nn.Dropout(0.3)",
            "self.bn.running_mean.uniform_(-1.0, 1.0)", "self.bn.running_var.uniform_(0.5, 2.0)",
            "nn.init.uniform_(self.bn.weight, 0.5, 1.5)", "nn.init.uniform_(self.bn.bias, -0.5, 0.5)"]
    if anchor == "linear":
        init.insert(0, f"self.lin = nn.Linear(k, n, bias={spec['bias']})")
        first, inputs = ["x = self.lin(x)"], "[torch.randn(m, k)]"
    elif anchor == "matmul":
        init.insert(0, "self.weight = nn.Parameter(torch.randn(n, k) / k ** 0.5)")
        first, inputs = ["x = torch.matmul(x, self.weight.T)"], "[torch.randn(m, k)]"
    elif anchor == "conv":
        init.insert(0, "self.conv = nn.Conv2d(3, n, 3)")
        first, inputs = ["x = self.conv(x)"], "[torch.randn(m, 3, 7, 6)]"
    else:
        first, inputs = [], "[torch.randn(m, n)]"
    lines = first + ["r = x"]
    for op in spec["pre"]:
        lines.append("x = " + (UNARY.get(op) or BINARY[op]))
    if spec["pivot"]:
        lines.append(_pivot_line(spec["pivot"]))
        for op in spec["post"]:
            if spec["pivot"] in REDUCING:
                lines.append("x = " + AFTER_REDUCTION[op])
            else:
                lines.append("x = " + (UNARY.get(op) or BINARY[op]))
    body = "\n".join("        " + ln for ln in lines)
    init_src = "\n".join("        " + ln for ln in init)
    return (
        "import torch\nimport torch.nn as nn\n\n"
        f"m, k, n = {m}, {k}, {n}\n\n\n"
        "class Model(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        f"{init_src}\n\n"
        "    def forward(self, x):\n"
        f"{body}\n"
        "        return x\n\n\n"
        f"def get_inputs():\n    return {inputs}\n\n\n"
        "def get_init_inputs():\n    return []\n"
    )


@st.composite
def specs(draw, anchors=("linear", "matmul", "input", "conv")):
    anchor = draw(st.sampled_from(anchors))
    pre_ops = sorted(UNARY) + sorted(b for b in BINARY if b != "residual" or True)
    pre = draw(st.lists(st.sampled_from(pre_ops), min_size=0 if anchor in ("linear", "matmul") else 1, max_size=4))
    pivots = PIVOTS_4D if anchor == "conv" else PIVOTS_2D
    pivot = draw(st.one_of(st.none(), st.sampled_from(pivots)))
    if pivot in REDUCING:
        post = draw(st.lists(st.sampled_from(sorted(AFTER_REDUCTION)), max_size=2))
    elif pivot:
        post = draw(st.lists(st.sampled_from(sorted(UNARY) + ["add_bias", "mul_scale", "residual"]), max_size=2))
    else:
        post = []
    return {
        "anchor": anchor, "m": draw(st.integers(1, 9)), "k": draw(st.integers(1, 40)),
        "n": draw(st.integers(2, 12)), "groups": draw(st.sampled_from([1, 2, 4])), "bias": draw(st.booleans()),
        "pre": pre, "pivot": pivot, "post": post,
    }
