"""What the ideator and the coder are told: the problem's source and the machine model in the cached prefix; the
parents with their speedups and profiles, the recent failures and the guidance in the prompt. Each candidate row
carries the model, the request's hash, the server's token counts and the cost."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from llm_loopback import IDEAS, LEAKY_RELU, Loopback, fenced, leaky_module, proposer
from proposers.base import Candidate, Failure, Scored, StaticView
from proposers.llm.clients import ChatRequest
from proposers.llm.guidance import append_guidance

PARENT = Candidate(source=leaky_module("torch.nn.functional.leaky_relu(x, self.negative_slope)"), proposer="rewrites")
FAILED = Candidate(source=leaky_module("x.clamp(min=0)"), proposer="llm")
PROFILE = {"flops": 4.2e6, "bytes": 3.3e7, "arithmetic_intensity": 0.125, "roofline_fraction": 0.42,
           "floor_ms": 0.5, "bound": "memory", "launches": 1,
           "top_ops": [{"name": "aten::leaky_relu", "self_device_ms": 1.19, "calls": 1}]}


def _view(hardware: str = "cpu") -> StaticView:
    return StaticView(LEAKY_RELU, hardware=hardware, cores=2,
                      accepted=(Scored(PARENT, speedup=1.37, candidate_ms=1.2, profile=PROFILE),),
                      rejected=(Failure(FAILED, "mismatch", "max abs error 0.5 at output[3, 7]"),))


def _responder(role: str, prompt: str, body: dict) -> str:
    return IDEAS if role == "ideator" else fenced(leaky_module("torch.where(x > 0, x, x * self.negative_slope)"))


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_prompts_hold_problem_machine_parents_profile_failures_guidance(tmp_path: Path, provider: str) -> None:
    append_guidance(tmp_path, "prefer torch.where over masks")
    with Loopback(_responder) as lb:
        p = proposer(lb, tmp_path, provider, guidance="keep float32", concurrency=1)
        cands = p.propose(_view(), 1)
    assert [a["role"] for a in lb.answered] == ["ideator", "coder"]
    problem = Path(LEAKY_RELU).read_text()
    for a in lb.answered:
        body = a["body"]
        static = ("".join(b["text"] for b in body["system"]) if provider == "anthropic"
                  else body["messages"][0]["content"])
        assert "F.leaky_relu(x, negative_slope=self.negative_slope)" in static      # the problem source
        assert problem.strip()[:80] in static
        assert "Hardware class 'cpu'" in static and "2 cores given to the evaluation" in static
        assert "GB/s" in static and "only this verifier decides" in static
        prompt = a["prompt"]
        assert PARENT.id[:12] in prompt and "1.370x" in prompt                       # parents and speedups
        assert "42.0% of its roofline floor" in prompt and "aten::leaky_relu" in prompt   # the profile
        assert "mismatch: max abs error 0.5" in prompt                               # recent failures
        assert "keep float32" in prompt and "prefer torch.where over masks" in prompt  # guidance, file and campaign
    assert len(cands) == 1
    meta = cands[0].params["llm"]
    coder = lb.answered[1]
    request = cands[0].params.to_dict()["llm"]
    assert request["model"] == "claude-sonnet-4-5" and request["role"] == "coder"
    assert request["input_tokens"] == coder["input_tokens"] and request["output_tokens"] == coder["output_tokens"]
    assert request["cache_read_tokens"] == coder["cache_read_tokens"]
    assert len(request["prompt_sha"]) == 64 and request["idea"].startswith("compute it as torch.where")
    if provider == "anthropic":
        assert request["cost_usd"] > 0      # priced from the table for claude-sonnet-4-5
    assert cands[0].proposer == "llm" and cands[0].parent_ids == (PARENT.id,)


def test_prompt_hash_is_the_request_key(tmp_path: Path) -> None:
    with Loopback(_responder) as lb:
        p = proposer(lb, tmp_path, concurrency=1, roles=("coder",))
        cand = p.propose(_view(), 1)[0]
    body = lb.answered[0]["body"]
    req = ChatRequest(model=body["model"], system=tuple(b["text"] for b in body["system"]),
                      prompt=lb.answered[0]["prompt"], max_tokens=body["max_tokens"])
    assert cand.params["llm"]["prompt_sha"] == req.key == hashlib.sha256(json.dumps(
        {"model": req.model, "system": list(req.system), "prompt": req.prompt, "max_tokens": req.max_tokens,
         "temperature": None}, sort_keys=True).encode()).hexdigest()


def test_ideas_from_guidance_are_marked(tmp_path: Path) -> None:
    append_guidance(tmp_path, "try torch.maximum")
    with Loopback(_responder) as lb:
        p = proposer(lb, tmp_path, concurrency=1)
        first = p.propose(_view(), 1)
        lb.responder = lambda role, prompt, body: fenced(leaky_module("torch.maximum(x, x * self.negative_slope)"))
        second = p.propose(_view(), 1)
    assert first[0].params["llm"]["from_guidance"] is False
    assert second[0].params["llm"]["from_guidance"] is True
    assert second[0].params["llm"]["idea"] == "use torch.maximum(x, x * slope)"


def test_gpu_prompt_names_hopper_features(tmp_path: Path) -> None:
    with Loopback(_responder) as lb:
        proposer(lb, tmp_path, concurrency=1, roles=("coder",)).propose(_view("h100"), 1)
    static = "".join(b["text"] for b in lb.answered[0]["body"]["system"])
    assert "wgmma" in static and "tma" in static and "132 SMs" in static
    assert "triton backend" in lb.answered[0]["prompt"]
