"""Rewrites work on model code as people write it: annotations, defaults and keywords, module containers,
functional and method spellings, sizes read in forward, tensors built in forward, and control flow that fx cannot
trace (a partial trace around it, or a one-line reason)."""
from __future__ import annotations

import torch

from harness import build_pair
from problems import make_problem
from proposers.fxtrace import trace_model
from proposers.rewrites.core import generate
from proposers.rewrites.problem import trace_problem_reason
from test_rewrites_are_exact import assert_exact


def test_annotated_forward_builds_and_is_exact(tmp_path):
    p = make_problem(tmp_path, "annotated", """
        class Model(nn.Module):
            def __init__(self, n: int, scale: float) -> None:
                super().__init__()
                self.fc = nn.Linear(n, n)
                self.scale = scale

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.relu(self.fc(x) * self.scale)
        """, "[torch.randn(4, 8)]", init="[8, 0.5]")
    src = assert_exact(p, ["scale_bias_fold"])
    assert "_torch_Tensor_" not in src


def test_defaults_and_keywords_are_traced_as_the_call_uses_them(tmp_path):
    p = make_problem(tmp_path, "defaults", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 6)

            def forward(self, x: torch.Tensor, shift=None, *, scale: float = 3.0) -> torch.Tensor:
                if shift is None:
                    shift = torch.zeros(x.size(0), 6, device=x.device)
                return self.fc(x) * scale + shift
        """, "[torch.randn(4, 8)]")
    src = assert_exact(p, ["scale_bias_fold"])
    ref, new, prob = build_pair(p.source, src)
    x = prob.get_inputs()[0]
    with torch.no_grad():
        assert torch.allclose(new(x, shift=None), ref(x), atol=1e-5)


def test_linears_in_sequential_modulelist_and_moduledict_merge(tmp_path):
    p = make_problem(tmp_path, "containers", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.seq = nn.Sequential(nn.Linear(8, 12), nn.Linear(12, 10))
                self.blocks = nn.ModuleList([nn.Linear(10, 10) for _ in range(2)])
                self.heads = nn.ModuleDict({"out": nn.Linear(10, 5)})

            def forward(self, x):
                x = self.seq(x)
                for block in self.blocks:
                    x = block(x)
                return self.heads["out"](x)
        """, "[torch.randn(3, 8)]")
    src = assert_exact(p, ["linear_chain"])
    body = src.split("---- generated ----")[1]
    assert body.count("linear(") == 1 and "self.seq" not in body


def test_functional_and_method_spellings_are_recognised(tmp_path):
    p = make_problem(tmp_path, "spellings", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.w = nn.Parameter(torch.randn(6, 8))
                self.b = nn.Parameter(torch.randn(6))
                self.fc = nn.Linear(6, 4)

            def forward(self, x):
                h = F.relu(x).relu()
                y = torch.relu(F.linear(h, self.w, self.b))
                return self.fc(y).mul(0.5).mean(dim=1, keepdim=False)
        """, "[torch.randn(2, 5, 8)]")
    src = assert_exact(p, ["reduce_reassoc"])
    assert ".mean(" in src


def test_sizes_read_in_forward_stay_symbolic(tmp_path):
    p = make_problem(tmp_path, "sizes", """
        class Model(nn.Module):
            def __init__(self, c, hw):
                super().__init__()
                self.fc = nn.Linear(c * hw * hw, 16)

            def forward(self, x):
                b, c = x.size(0), x.shape[1]
                h = x.view(b, -1).reshape(x.size(0), c * x.shape[2] * x.shape[3])
                return (self.fc(h) / 4.0).reshape(b, 4, -1)
        """, "[torch.randn(batch, c, hw, hw)]", init="[c, hw]", sizes="batch = 2\nc = 3\nhw = 4",
        scales='{"large": {"batch": 16}}')
    src = assert_exact(p, ["scale_bias_fold"])
    assert "16" not in src.split("---- generated ----")[1]


def test_submodule_with_data_dependent_branch_is_kept_opaque(tmp_path):
    p = make_problem(tmp_path, "partial", """
        class Gate(nn.Module):
            def forward(self, x):
                if x.sum() > 0:
                    return x * 2.0
                return x - 1.0


        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.gate = Gate()
                self.a = nn.Linear(8, 8)
                self.b = nn.Linear(8, 4)

            def forward(self, x):
                return self.b(self.a(self.gate(x)))
        """, "[torch.randn(3, 8)]")
    traced, note = trace_problem_reason(p)
    assert traced is not None and note.startswith("partial trace") and "gate" in note
    src = assert_exact(p, ["linear_chain"])
    assert "self.gate(" in src


def test_untraceable_root_has_a_one_line_reason(tmp_path):
    p = make_problem(tmp_path, "branchy", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(4, 4)

            def forward(self, x):
                if x.mean() > 0:
                    return self.a(x)
                return x
        """, "[torch.randn(2, 4)]")
    traced, reason = trace_problem_reason(p)
    assert traced is None
    assert "cannot be traced" in reason and "control flow" in reason and "\n" not in reason


def test_forward_that_assigns_state_is_not_traced(tmp_path):
    p = make_problem(tmp_path, "stateful", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(4, 4)
                self.b = nn.Linear(4, 4)
                self.h = torch.zeros(4)

            def forward(self, x):
                self.h = self.h.to(x.device)
                return self.b(self.a(x)) + self.h
        """, "[torch.randn(2, 4)]")
    traced, reason = trace_problem_reason(p)
    assert traced is None and "assigns self.h" in reason
    assert generate(p, ["linear_chain"]) is None


def test_tensor_built_from_an_attribute_in_forward_stays_a_call(tmp_path):
    # KernelBench's level2/31 pattern: torch.min(x, torch.tensor(self.constant_value))
    p = make_problem(tmp_path, "factory", """
        class Model(nn.Module):
            def __init__(self, c):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3)
                self.c = c

            def forward(self, x):
                x = self.conv(x) * 2.0
                return torch.min(x, torch.tensor(self.c))
        """, "[torch.randn(2, 3, 8, 8)]", init="[0.5]")
    for names in (["scale_bias_fold"], ["channels_last"]):
        src = assert_exact(p, names)
        assert "torch.tensor(" in src and "_tensor_constant" not in src


def test_constant_built_through_an_alias_is_written_out(tmp_path):
    p = make_problem(tmp_path, "alias", """
        make = torch.tensor


        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3, 3)

            def forward(self, x):
                return self.fc(x) * 2.0 + make([1.0, -2.0, float("inf")])
        """, "[torch.randn(2, 3)]")
    src = assert_exact(p, ["scale_bias_fold"])
    assert "_tensor_constant0" in src


def test_init_that_reads_values_is_traced_with_weights_on_meta(tmp_path):
    p = make_problem(tmp_path, "item", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                rates = [r.item() for r in torch.linspace(0, 0.5, 2)]
                self.a = nn.Linear(6, 6)
                self.b = nn.Linear(6, 2)
                self.rate = rates[-1]

            def forward(self, x):
                return self.b(self.a(x)) * self.rate
        """, "[torch.randn(2, 6)]")
    traced, _ = trace_problem_reason(p)
    assert traced is not None and next(traced.model.parameters()).device.type == "meta"
    assert_exact(p, ["linear_chain"])


def test_trace_model_gives_shapes_or_says_why():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(5, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x).softmax(dim=-1)

    with torch.device("meta"):
        gm, note = trace_model(Net(), [torch.empty(2, 5)])
    assert note == "" and gm.meta["shapes_known"]
    out = [n for n in gm.graph.nodes if n.op == "output"][0].args[0]
    assert tuple(out.meta["tensor_meta"].shape) == (2, 3)


def test_conditions_on_sizes_and_devices_are_decided_and_guarded(tmp_path):
    p = make_problem(tmp_path, "guards", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(8, 8)
                self.b = nn.Linear(8, 4)

            def forward(self, x):
                b, n, d = x.shape
                assert d == 8, "wrong width"
                if x.device != self.a.weight.device:
                    raise ValueError("device")
                if n > 2:
                    x = x[:, :2]
                return self.b(self.a(x))
        """, "[torch.randn(2, 5, 8)]")
    traced, note = trace_problem_reason(p)
    assert traced is not None and note == ""
    src = assert_exact(p, ["linear_chain"])
    ref, new, prob = build_pair(p.source, src)
    with torch.no_grad():
        try:
            new(torch.randn(2, 1, 8))    # the other branch: the guard refuses instead of answering wrongly
            raised = False
        except Exception:  # noqa: BLE001 - torch._assert raises AssertionError or RuntimeError
            raised = True
    assert raised


def test_matmul_by_a_transposed_parameter_is_a_linear(tmp_path):
    p = make_problem(tmp_path, "weight_t", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.weight = nn.Parameter(torch.randn(6, 5))

            def forward(self, x):
                return torch.matmul(x, self.weight.T) / 2
        """, "[torch.randn(4, 5)]")
    src = assert_exact(p, ["scale_bias_fold"])
    assert ".T" in src and "matmul" not in src.split("---- generated ----")[1].split("def forward")[1]
