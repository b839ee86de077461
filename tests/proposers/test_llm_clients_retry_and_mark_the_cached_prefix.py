"""The real anthropic SDK and the OpenAI-compatible client, against the loopback server: 429, 529 overloaded, 500
and a reply slower than the timeout are retried with backoff until an answer comes; the static prefix is marked for
prompt caching, and the server's cache reads come back as tokens; a request that keeps failing is a ChatError."""
from __future__ import annotations

import pytest

from llm_loopback import Loopback
from proposers.llm.clients import AnthropicChat, ChatError, ChatRequest, OpenAIChat

REQ = ChatRequest(model="claude-sonnet-4-5", system=("rules " * 50, "problem " * 50), prompt="Task: code (attempt 1)")


def _client(kind: str, url: str, retries: int = 5):
    if kind == "anthropic":
        return AnthropicChat(api_key="sk-loopback", base_url=url, max_retries=retries, timeout_s=0.5)
    return OpenAIChat(base_url=url + "/v1", max_retries=retries, timeout_s=0.5, initial_delay_s=0.05)


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_faults_are_retried_until_an_answer(kind: str) -> None:
    with Loopback(lambda role, prompt, body: f"answer to {role}", slow_s=1.5) as lb:
        lb.faults = ["slow", "429", "529", "500"]
        reply = _client(kind, lb.url).complete(REQ)
    assert reply.text == "answer to coder"
    assert [a["fault"] for a in lb.attempts] == ["slow", "429", "529", "500", ""]
    assert reply.input_tokens > 0 and reply.output_tokens > 0


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_a_request_that_keeps_failing_is_a_chat_error(kind: str) -> None:
    with Loopback(lambda *a: "never") as lb:
        lb.faults = ["529"] * 3
        with pytest.raises(ChatError, match="529|overloaded"):
            _client(kind, lb.url, retries=2).complete(REQ)
        assert len(lb.attempts) == 3


def test_static_prefix_is_marked_for_caching_and_cache_reads_are_counted() -> None:
    with Loopback(lambda *a: "ok") as lb:
        client = _client("anthropic", lb.url)
        first = client.complete(REQ)
        second = client.complete(ChatRequest(model=REQ.model, system=REQ.system, prompt="Task: fix (round 1 of 2)"))
    system = lb.answered[0]["body"]["system"]
    assert [b.get("cache_control") for b in system] == [None, {"type": "ephemeral"}]
    headers = lb.attempts[0]["headers"]
    assert "sk-loopback" in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    assert first.cache_write_tokens > 0 and first.cache_read_tokens == 0
    assert second.cache_read_tokens == first.cache_write_tokens and second.cache_write_tokens == 0


def test_request_key_follows_content_not_role() -> None:
    assert REQ.key == ChatRequest(model=REQ.model, system=REQ.system, prompt=REQ.prompt, role="coder").key
    assert REQ.key != ChatRequest(model=REQ.model, system=REQ.system, prompt=REQ.prompt + " ").key
