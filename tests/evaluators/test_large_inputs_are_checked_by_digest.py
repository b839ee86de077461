"""Inputs above the digest threshold come back from a real sandboxed child as placeholders, and the child digests
them only under a key sent after the call's reply: a candidate that changes one element or swaps two is
input_mutated, an honest one is accepted, small inputs keep the exact comparison beside large ones, and a
candidate that leaves something behind to redirect the digest (a re-registered aten kernel, a dispatch mode) is
rejected as tampering."""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from evaluators import digest
from evaluators import inputs as inp
from evaluators.judge import POISON, build_reference, init_child
from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, VerifyPolicy
from evaluators.problem import load_problem_module
from evaluators.result import Status
from evaluators.sandbox import Child, SandboxLimits

_CATALOG_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "catalog.py"
_spec = importlib.util.spec_from_file_location("kswarm_fixture_catalog", _CATALOG_PATH)
catalog = sys.modules.get(_spec.name)
if catalog is None:
    catalog = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = catalog
    _spec.loader.exec_module(catalog)

# fixtures judged again at their problem's large scale, where the input is above the threshold. One honest softmax
# (the compiled one) stands for both: each took over a minute of a CI run. A softmax at that size needs more memory
# than the catalogue's default (out_of_memory at 2048 MB with or without the digest) and, on a loaded 2-core
# machine, more than the catalogue's 90 s for its 36 checked calls (83 s seen)
AT_LARGE_SCALE = {
    "adversarial/c04_mutates_input": {},
    "adversarial/c04_mutates_one_element": {},
    "adversarial/c04_swaps_two_elements": {},
    "honest/clamp_minmax": {},
    # torch.compile in the child must leave nothing the digest's guard reads as a redirection
    "honest/compile_row_softmax": {},
}
FIXTURES = {fx.id: fx for fx in catalog.load_fixtures()}


def _cases():
    for fid, policy in AT_LARGE_SCALE.items():
        yield pytest.param(fid, policy, id=fid, marks=[getattr(pytest.mark, m) for m in FIXTURES[fid].marks])


def large_input_bytes(problem: Path) -> list[int]:
    module, _ = load_problem_module(str(problem), "large")
    return [x.numel() * x.element_size() for x in inp.make_inputs(module, 0, "cpu")]


@pytest.mark.parametrize(("fid", "policy"), list(_cases()))
def test_fixture_at_large_scale_gets_its_verdict_through_the_digest(fid, policy, kswarm_cache_dir, monkeypatch):
    # a verify-mode evaluation's checked calls after its trials and probes go through the same digest as those: 3
    # show it as well as the default 30, which took over half a minute of 64 MB softmax inputs in CI
    from evaluators import pipeline
    monkeypatch.setattr(pipeline, "VERIFY_MODE_CALLS", 3)
    fx = FIXTURES[fid]
    assert max(large_input_bytes(fx.problem_path)) > digest.DIGEST_MIN_BYTES, "the input would come back whole"
    request = catalog.build_request(fx, "warn" if fx.kind == "adversarial" else "reject", str(kswarm_cache_dir))
    request = dataclasses.replace(request, scale="large",
                                  verify=dataclasses.replace(request.verify, **policy))
    result = evaluate(request)
    expected = fx.expected["warn" if fx.kind == "adversarial" else "reject"]
    assert result.status.value in expected, f"{fid}: {result.status.value} ({result.reason})"
    if result.status is Status.INPUT_MUTATED:
        assert "input 0 was modified in place" in result.reason


# --- a problem with a large and a small input, and a plain number -------------------------------------------------

PROBLEM = """\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x, bias, k):
        return torch.relu(x) * k + bias.sum()


def get_inputs():
    return [torch.randn(512, 1024), torch.randn(64), 3]


def get_init_inputs():
    return []
"""

HONEST = """\
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x, bias, k):
        return torch.clamp(x, min=0.0) * k + bias.sum()
"""

MUTATES_LARGE = """\
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x, bias, k):
        out = torch.relu(x) * k + bias.sum()
        x[300, 7] = 0.5
        return out
"""

MUTATES_SMALL = """\
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x, bias, k):
        out = torch.relu(x) * k + bias.sum()
        bias[3] += 1.0
        return out
"""

# A re-registered kernel of an op the digest uses, left in place after the call (the digest's lanes would come out
# as the candidate likes): the guard refuses the digest.
REREGISTERS_SUM = """\
import warnings
import torch
import torch.nn as nn

_LIB = torch.library.Library("aten", "IMPL")
_REAL_SUM = torch.ops.aten.sum.default


def _sum(t, dtype=None):
    with torch._C._AutoDispatchBelowAutograd():
        return torch.zeros((), dtype=t.dtype if dtype is None else dtype)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()
        self.armed = False

    def forward(self, x, bias, k):
        out = torch.relu(x) * k + bias.sum()
        if not self.armed:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _LIB.impl("sum", _sum, "CPU")
            self.armed = True
        return out
"""

# A dispatch mode entered in forward and never left: every op after the call goes through the candidate's code.
LEAVES_A_MODE = """\
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode


class _Passthrough(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()
        self.mode = None

    def forward(self, x, bias, k):
        out = torch.relu(x) * k + bias.sum()
        if self.mode is None:
            self.mode = _Passthrough()
            self.mode.__enter__()
        return out
"""


@pytest.fixture(scope="module")
def problem(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("digest-problem") / "relu_bias.py"
    path.write_text(PROBLEM)
    sizes = large_input_bytes_default(path)
    assert sizes[0] > digest.DIGEST_MIN_BYTES >= sizes[1]
    return path


def large_input_bytes_default(path: Path) -> list[int]:
    module, _ = load_problem_module(str(path), "default")
    return [x.numel() * x.element_size() for x in inp.make_inputs(module, 0, "cpu") if hasattr(x, "numel")]


def run(problem: Path, source: str, cache_dir: Path):
    return evaluate(EvalRequest(problem_path=str(problem), candidate_source=source, device="cpu", mode="verify",
                                verify=VerifyPolicy(static="warn", seed=11, memory_mb=2048, timeout_s=120),
                                cache_dir=str(cache_dir)))


def test_an_honest_candidate_with_a_large_input_is_accepted(problem, kswarm_cache_dir):
    result = run(problem, HONEST, kswarm_cache_dir)
    assert result.status is Status.ACCEPTED, result.reason


@pytest.mark.parametrize(("source", "which"), [(MUTATES_LARGE, 0), (MUTATES_SMALL, 1)],
                         ids=["large-input-digested", "small-input-compared-bytewise"])
def test_a_changed_input_is_named_whichever_way_it_is_checked(problem, kswarm_cache_dir, source, which):
    result = run(problem, source, kswarm_cache_dir)
    assert result.status is Status.INPUT_MUTATED, result.reason
    assert f"input {which} was modified in place" in result.reason


@pytest.mark.parametrize("source", [REREGISTERS_SUM, LEAVES_A_MODE], ids=["reregistered-aten-kernel", "dispatch-mode"])
def test_what_would_redirect_the_digest_is_tampering(problem, kswarm_cache_dir, source):
    result = run(problem, source, kswarm_cache_dir)
    assert result.status is Status.TAMPERING, f"{result.status.value}: {result.reason}"
    assert "digest was refused" in result.reason


# --- the protocol, request by request ------------------------------------------------------------------------------

def test_the_child_sends_placeholders_and_digests_only_after_the_call(problem, kswarm_cache_dir, tmp_path):
    ref = build_reference(str(problem), "default", "cpu", 5)
    candidate = tmp_path / "candidate.py"
    candidate.write_text(HONEST)
    with Child(SandboxLimits(timeout_s=120.0, memory_mb=2048), kswarm_cache_dir, label="candidate") as child:
        init_child(child, "candidate", ref, candidate_path=candidate, warmup=1)
        # no checked call yet: nothing to digest
        kind, reply = child.request("digest", {"key": 1})
        assert kind == "error" and "no checked call" in reply["message"]
        seed = 1234
        kind, reply = child.request("check", {"seed": seed, "probe": None, "poison_bytes": 1 << 20,
                                              "poison_value": POISON[0], "reuse": False})
        assert kind == "outputs"
        large, small, k = reply["inputs_after"]
        assert digest.is_placeholder(large) and large["shape"] == [512, 1024] and large["dtype"] == "torch.float32"
        assert not digest.is_placeholder(small) and tuple(small.shape) == (64,) and k == 3
        ref_inputs, _ = ref.run(seed)
        key = digest.new_key()
        kind, reply = child.request("digest", {"key": key})
        assert kind == "digests"
        assert reply["digests"] == digest.input_digests(ref_inputs, key)
        assert reply["digests"][0] != digest.input_digests(ref_inputs, key ^ 1)[0]
        # one digest per checked call: the inputs are forgotten once digested
        kind, reply = child.request("digest", {"key": key})
        assert kind == "error"


def test_with_the_digest_off_large_inputs_come_back_whole_and_are_still_judged(problem, kswarm_cache_dir, tmp_path):
    """``[verify] digest_inputs = false`` is the way back to the byte-for-byte comparison of every input."""
    ref = build_reference(str(problem), "default", "cpu", 5)
    candidate = tmp_path / "candidate.py"
    candidate.write_text(HONEST)
    with Child(SandboxLimits(timeout_s=120.0, memory_mb=2048), kswarm_cache_dir, label="candidate") as child:
        init_child(child, "candidate", ref, candidate_path=candidate, warmup=1, digest_inputs=False)
        kind, reply = child.request("check", {"seed": 7, "probe": None, "poison_bytes": 1 << 20,
                                              "poison_value": POISON[0], "reuse": False})
        assert kind == "outputs"
        large = reply["inputs_after"][0]
        assert not digest.is_placeholder(large) and tuple(large.shape) == (512, 1024)
    result = evaluate(EvalRequest(problem_path=str(problem), candidate_source=MUTATES_LARGE, device="cpu",
                                  mode="verify", cache_dir=str(kswarm_cache_dir),
                                  verify=VerifyPolicy(static="warn", seed=11, memory_mb=2048, timeout_s=120,
                                                      digest_inputs=False)))
    assert result.status is Status.INPUT_MUTATED and "input 0 was modified in place" in result.reason
