"""The CUDA graph wrapper: any candidate source gains a ``ModelNew`` that replays its forward from static buffers
with fresh inputs copied in on every call; off the GPU, in training or with autograd it runs the inner forward as it
is. The proposer wraps a problem's best accepted candidates, on CUDA hardware classes only."""
from __future__ import annotations

import pytest
import torch

from harness import build_pair, load_module, max_violation
from proposers.base import Candidate, Scored, StaticView
from proposers.fusion.cuda_graphs import MARK, GraphsProposer, WrapError, wrap

PROBLEM = """
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 16)

    def forward(self, x, y):
        return torch.relu(self.lin(x)) * y, x.sum()


def get_inputs():
    return [torch.randn(4, 8), torch.randn(4, 16)]


def get_init_inputs():
    return []
"""
CANDIDATE = PROBLEM.split("\n\ndef get_inputs")[0] + """

class ModelNew(Model):
    def forward(self, x, y):
        h = self.lin(x)
        return torch.clamp_min(h, 0.0) * y, super(ModelNew, self).forward(x, y)[1]
"""


def test_wrapped_candidate_runs_the_inner_forward_off_the_gpu():
    src = wrap(CANDIDATE)
    assert MARK in src and "class _KsGraphInner(Model)" in src and "super(_KsGraphInner," in src
    ref, new, mod = build_pair(PROBLEM, src)
    torch.manual_seed(0)
    x = mod.get_inputs()
    with torch.no_grad():
        assert max_violation(ref(*x), new(*x)) <= 0
    assert new._ks_graphs == {}                      # nothing captured on the CPU
    with torch.no_grad():
        new.train()
        assert max_violation(ref(*x), new(*x)) <= 0


def test_wrap_refuses_what_it_cannot_wrap():
    with pytest.raises(WrapError, match="already"):
        wrap(wrap(CANDIDATE))
    with pytest.raises(WrapError, match="exactly one"):
        wrap(PROBLEM)


def _view(hardware: str) -> StaticView:
    good = Candidate(source=CANDIDATE, params={"k": 1}, backend="torch", hardware=hardware, problem_id="p")
    other = Candidate(source=CANDIDATE + "\n# variant\n", params={"k": 2}, backend="torch", hardware=hardware,
                      problem_id="p")
    return StaticView("/nowhere/p.py", hardware, accepted=(Scored(good, 1.5), Scored(other, 1.2)))


def test_proposer_wraps_the_best_accepted_on_cuda_only():
    p = GraphsProposer(top=2)
    assert p.propose(_view("cpu"), 4) == []
    view = _view("h200")
    cands = p.propose(view, 4)
    assert len(cands) == 2 and all(MARK in c.source for c in cands)
    assert cands[0].parent_ids == (view.best(1)[0].candidate.id,)
    assert p.propose(view, 4) == []                  # never the same candidate twice
    load_module(cands[0].source)                     # valid Python that defines ModelNew


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_replay_sees_fresh_inputs_and_keeps_earlier_outputs():
    ref, new, mod = build_pair(PROBLEM, wrap(CANDIDATE))
    ref, new = ref.cuda().eval(), new.cuda().eval()
    outs = []
    with torch.no_grad():
        for seed in range(4):
            torch.manual_seed(seed)
            x = [t.cuda() for t in mod.get_inputs()]
            want, got = ref(*x), new(*x)
            assert max_violation(want, got) <= 0
            outs.append((want, got))
        assert len(new._ks_graphs) == 1
        for want, got in outs:                       # a later replay did not overwrite an earlier output
            assert max_violation(want, got) <= 0
        new.cpu()
        assert new._ks_graphs == {}
