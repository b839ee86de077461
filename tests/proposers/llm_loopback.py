"""A loopback LLM server for tests and the token experiment: the Anthropic Messages API (``POST /v1/messages``)
and an OpenAI-compatible ``POST /v1/chat/completions`` on 127.0.0.1 at a free port.

Replies come from a ``responder(role, prompt, body) -> text`` the test gives; the role is read from the prompt's
task line (ideator, coder, fixer). Faults queued in ``faults`` are served to the next requests, one each, in order:
``"429"`` (rate limited), ``"529"`` (overloaded), ``"500"``, and ``"slow"`` (an answer later than the client's
timeout). Token counts are the server's own: a token per 4 characters; on the Messages API the system blocks up to
the one marked ``cache_control`` are a prefix that is written to the cache the first time and read from it after.
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[str, str, dict], str]


def tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def role_of(prompt: str) -> str:
    for marker, role in (("Task: ideas", "ideator"), ("Task: code", "coder"), ("Task: fix", "fixer")):
        if marker in prompt:
            return role
    return "unknown"


class Loopback:
    def __init__(self, responder: Responder, *, slow_s: float = 3.0):
        self.responder = responder
        self.slow_s = slow_s
        self.faults: list[str] = []
        self.fixed_usage: tuple[int, int] | None = None   # (input, output) tokens reported for every answer
        self.attempts: list[dict[str, Any]] = []      # every request received, faults included
        self.answered: list[dict[str, Any]] = []      # requests answered with a reply: role, prompt, tokens
        self._prefixes: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "Loopback":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def totals(self) -> dict[str, int]:
        with self._lock:
            return {k: sum(a[k] for a in self.answered)
                    for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")}

    # ---- handling ----------------------------------------------------------------------------------------------

    def _handler(self):
        loop = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                api = "anthropic" if self.path.endswith("/v1/messages") else (
                    "openai" if self.path.endswith("/chat/completions") else "")
                with loop._lock:
                    fault = loop.faults.pop(0) if loop.faults else ""
                    loop.attempts.append({"api": api, "fault": fault, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                if not api:
                    return self._send(404, {"error": "unknown path"})
                if fault in ("429", "529", "500"):
                    kind = {"429": "rate_limit_error", "529": "overloaded_error", "500": "api_error"}[fault]
                    return self._send(int(fault), {"type": "error", "error": {"type": kind, "message": kind}},
                                      {"retry-after-ms": "20"})
                if fault == "slow":
                    time.sleep(loop.slow_s)
                try:
                    self._send(200, loop._answer(api, body))
                except (BrokenPipeError, ConnectionResetError):
                    pass            # the client gave up (timeout) and retried

            def _send(self, code: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _answer(self, api: str, body: dict) -> dict:
        if api == "anthropic":
            system = body.get("system") or []
            blocks = [system] if isinstance(system, str) else [b["text"] for b in system]
            marked = [i for i, b in enumerate(system if isinstance(system, list) else []) if b.get("cache_control")]
            n_prefix = marked[-1] + 1 if marked else 0
            prefix = "".join(blocks[:n_prefix])
            content = body["messages"][-1]["content"]
            prompt = content if isinstance(content, str) else "".join(c.get("text", "") for c in content)
            rest = "".join(blocks[n_prefix:]) + prompt
        else:
            msgs = body["messages"]
            prefix = ""
            prompt = msgs[-1]["content"]
            rest = "".join(m["content"] for m in msgs)
        role = role_of(prompt)
        text = self.responder(role, prompt, body)
        with self._lock:
            hit = prefix in self._prefixes
            self._prefixes.add(prefix)
        usage = {"input_tokens": tokens(rest), "output_tokens": tokens(text),
                 "cache_read_tokens": tokens(prefix) if prefix and hit else 0,
                 "cache_write_tokens": tokens(prefix) if prefix and not hit else 0}
        if self.fixed_usage is not None:
            usage = {"input_tokens": self.fixed_usage[0], "output_tokens": self.fixed_usage[1],
                     "cache_read_tokens": 0, "cache_write_tokens": 0}
        with self._lock:
            self.answered.append({"api": api, "role": role, "prompt": prompt, "body": body, **usage})
        if api == "anthropic":
            return {"id": f"msg_{len(self.answered)}", "type": "message", "role": "assistant",
                    "model": body.get("model", ""), "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn", "stop_sequence": None,
                    "usage": {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"],
                              "cache_read_input_tokens": usage["cache_read_tokens"],
                              "cache_creation_input_tokens": usage["cache_write_tokens"]}}
        return {"id": f"chatcmpl-{len(self.answered)}", "object": "chat.completion", "model": body.get("model", ""),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"],
                          "total_tokens": usage["input_tokens"] + usage["output_tokens"]}}


# ---- scripted replies for leaky_relu (experiments/problems/level1/leaky_relu.py) -----------------------------------

LEAKY_RELU = "experiments/problems/level1/leaky_relu.py"


def leaky_module(body: str, header: str = "") -> str:
    """A ModelNew for leaky_relu whose forward returns ``body``."""
    return ("import torch\nimport torch.nn as nn\n" + header + "\n\nclass ModelNew(nn.Module):\n"
            "    def __init__(self, negative_slope):\n        super().__init__()\n"
            "        self.negative_slope = negative_slope\n\n"
            f"    def forward(self, x):\n        return {body}\n")


def fenced(source: str, prose: str = "Here is the module.") -> str:
    return f"{prose}\n\n```python\n{source}```\n"


IDEAS = "- [torch] compute it as torch.where(x > 0, x, x * slope)\n- [guidance] [torch] use torch.maximum(x, x * slope)\n"


def proposer(lb: "Loopback", campaign_dir, provider: str = "anthropic", **options):
    """An LLMProposer pointed at the loopback server, with the key in its environment (never in the test process's)."""
    from proposers.llm import LLMProposer
    env = {"ANTHROPIC_API_KEY": "sk-loopback", "ANTHROPIC_BASE_URL": lb.url}
    if provider == "openai":
        options.setdefault("base_url", lb.url + "/v1")
    options.setdefault("timeout_s", 5.0)
    options.setdefault("max_retries", 3)
    return LLMProposer(provider=provider, campaign_dir=str(campaign_dir), env=env, **options)
