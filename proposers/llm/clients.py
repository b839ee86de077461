"""Chat clients behind one interface: the Anthropic Messages API (through the anthropic SDK) and an
OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, a llama.cpp server), over plain urllib.

A ``ChatRequest`` holds a static prefix (system rules, the problem, the machine model: the same for every call on
one problem, so it is marked for prompt caching) and the dynamic part of the prompt. ``key`` is its content hash:
the response cache and the population rows name a request by it. Both clients retry 429, 5xx and timeouts with
backoff (the SDK's own retries for Anthropic; the same policy here for the OpenAI path) and return a ``ChatReply``
with the token counts the server reported.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

PROVIDERS = ("anthropic", "openai")


class ChatError(RuntimeError):
    """A request that failed after its retries (or could not be retried); the message says what to do."""


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    model: str
    system: tuple[str, ...]      # static blocks, in order; the last one carries the cache mark
    prompt: str                  # the dynamic part: parents, failures, guidance, the task
    max_tokens: int = 8192
    temperature: float | None = None   # None: the model's default (recent SDKs no longer take it as an argument)
    role: str = ""               # ideator, coder or fixer: for the ledger, not part of the request

    @property
    def key(self) -> str:
        body = {"model": self.model, "system": list(self.system), "prompt": self.prompt,
                "max_tokens": self.max_tokens, "temperature": self.temperature}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class ChatReply:
    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "ChatReply":
        names = {f.name for f in dataclasses.fields(ChatReply)}
        return ChatReply(**{k: v for k, v in d.items() if k in names})


class ChatClient(Protocol):
    provider: str

    def complete(self, request: ChatRequest) -> ChatReply: ...


class AnthropicChat:
    """The Messages API through the anthropic SDK. ``api_key`` and ``base_url`` default to the SDK's own
    variables (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL)."""

    provider = "anthropic"

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None, max_retries: int = 4,
                 timeout_s: float = 300.0):
        import anthropic

        self._errors = anthropic
        self._client = anthropic.Anthropic(api_key=api_key, base_url=base_url or None, max_retries=max_retries,
                                           timeout=timeout_s)

    def complete(self, request: ChatRequest) -> ChatReply:
        system = [{"type": "text", "text": text} for text in request.system]
        if system:
            system[-1]["cache_control"] = {"type": "ephemeral"}    # everything up to here is the cached prefix
        try:
            msg = self._client.messages.create(
                model=request.model, max_tokens=request.max_tokens, system=system,
                messages=[{"role": "user", "content": request.prompt}],
                extra_body={"temperature": request.temperature} if request.temperature is not None else None)
        except self._errors.APIStatusError as e:
            raise ChatError(f"Anthropic API error {e.status_code} after retries: {_short(e.message)}") from None
        except self._errors.APIConnectionError as e:   # includes timeouts, after the SDK's retries
            raise ChatError(f"cannot reach the Anthropic API after retries ({type(e).__name__}); check "
                            "ANTHROPIC_BASE_URL and the network") from None
        text = "".join(getattr(b, "text", "") for b in msg.content if getattr(b, "type", "") == "text")
        u = msg.usage
        return ChatReply(text=text, model=msg.model or request.model, input_tokens=u.input_tokens or 0,
                         output_tokens=u.output_tokens or 0,
                         cache_read_tokens=getattr(u, "cache_read_input_tokens", None) or 0,
                         cache_write_tokens=getattr(u, "cache_creation_input_tokens", None) or 0)


class OpenAIChat:
    """An OpenAI-compatible chat endpoint (``{base_url}/v1/chat/completions``), with the same retry policy as the
    SDK: 408, 409, 429 and 5xx and timeouts are retried with exponential backoff and jitter, honouring
    ``retry-after``."""

    provider = "openai"

    def __init__(self, *, base_url: str, api_key: str | None = None, max_retries: int = 4,
                 timeout_s: float = 300.0, initial_delay_s: float = 0.5, max_delay_s: float = 8.0):
        self.url = base_url.rstrip("/") + ("/chat/completions" if base_url.rstrip("/").endswith("/v1")
                                           else "/v1/chat/completions")
        self.api_key = api_key
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.initial_delay_s = initial_delay_s
        self.max_delay_s = max_delay_s

    def _body(self, request: ChatRequest) -> bytes:
        body = {"model": request.model, "max_tokens": request.max_tokens,
                "messages": [{"role": "system", "content": "\n\n".join(request.system)},
                             {"role": "user", "content": request.prompt}]}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return json.dumps(body).encode()

    def complete(self, request: ChatRequest) -> ChatReply:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = self._body(request)
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return self._reply(json.loads(resp.read()), request)
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}: {_short(e.read().decode(errors='replace'))}"
                if e.code not in (408, 409, 429) and e.code < 500:
                    raise ChatError(f"chat endpoint {self.url} refused the request ({last})") from None
                retry_after = _retry_after(e.headers)
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
                last = f"{type(e).__name__}: {_short(str(e))}"
            except (ValueError, KeyError, TypeError) as e:
                raise ChatError(f"chat endpoint {self.url} sent a reply that is not a chat completion: "
                                f"{_short(str(e))}") from None
            if attempt < self.max_retries:
                delay = retry_after if retry_after is not None else min(
                    self.initial_delay_s * 2 ** attempt, self.max_delay_s) * (1 - 0.25 * random.random())
                log.info("chat endpoint %s: %s; retry %d of %d in %.2f s", self.url, last, attempt + 1,
                         self.max_retries, delay)
                time.sleep(delay)
        raise ChatError(f"chat endpoint {self.url} failed after {self.max_retries} retries ({last}); check that "
                        "the server is up and the model name is right")

    @staticmethod
    def _reply(data: Mapping[str, Any], request: ChatRequest) -> ChatReply:
        text = data["choices"][0]["message"]["content"] or ""
        usage = data.get("usage") or {}
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        return ChatReply(text=text, model=data.get("model") or request.model,
                         input_tokens=int(usage.get("prompt_tokens") or 0) - cached,
                         output_tokens=int(usage.get("completion_tokens") or 0), cache_read_tokens=cached)


def _retry_after(headers: Any) -> float | None:
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if 0 <= seconds <= 60:
            return seconds
    return None


def _short(text: str, n: int = 300) -> str:
    return " ".join(str(text).split())[:n]


def make_client(provider: str, env: Mapping[str, str], *, base_url: str | None = None, max_retries: int = 4,
                timeout_s: float = 300.0, api_key_env: str | None = None) -> tuple[ChatClient | None, str]:
    """A client, or None and the one line that says why the proposer is off (no key, no endpoint)."""
    if provider == "anthropic":
        var = api_key_env or "ANTHROPIC_API_KEY"
        key = env.get(var) or None
        if key is None and not env.get("ANTHROPIC_AUTH_TOKEN"):
            return None, (f"llm proposer off: {var} is not set; export it (and ANTHROPIC_BASE_URL for a proxy) to "
                          "let the LLM propose; the campaign goes on with the other proposers")
        return AnthropicChat(api_key=key, base_url=base_url or env.get("ANTHROPIC_BASE_URL"),
                             max_retries=max_retries, timeout_s=timeout_s), ""
    if provider == "openai":
        url = base_url or env.get("OPENAI_BASE_URL")
        if not url:
            return None, ("llm proposer off: an OpenAI-compatible endpoint needs base_url = \"http://host:port/v1\" "
                          "in the [[proposers]] table (or OPENAI_BASE_URL); the campaign goes on without it")
        return OpenAIChat(base_url=url, api_key=env.get(api_key_env or "OPENAI_API_KEY") or None,
                          max_retries=max_retries, timeout_s=timeout_s), ""
    raise ValueError(f"unknown LLM provider {provider!r}; valid: {', '.join(PROVIDERS)}")
