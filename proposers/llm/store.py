"""What the LLM proposer keeps in the campaign directory: a response cache and a usage ledger.

``ResponseCache``: one JSON file per request key under ``llm/responses/``, written atomically. A resumed campaign
rebuilds the same prompts from the same journal and checkpoint, finds their answers here and pays nothing twice.

``Ledger``: an append-only ``llm/usage.jsonl``, one line per request actually sent (a replay adds nothing). Every
proposer instance of the campaign (one per hardware class) appends to the same file, so the token and cost budget is
the campaign's, and it spans resumes. Lines are short single ``write`` calls in append mode: whole on Linux.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from proposers.llm.clients import ChatReply, ChatRequest

# USD per million tokens (input, output), from the Anthropic pricing page (docs.anthropic.com/en/docs/about-claude/
# pricing), matched by the longest prefix of the model name. Cache writes cost 1.25x input, cache reads 0.1x.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-6": (5.0, 25.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-haiku-4": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
}
CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1


def price_for(model: str, override: tuple[float, float] | None = None) -> tuple[float, float] | None:
    """(input, output) USD per million tokens, or None when the model is not in the table and none is given."""
    if override is not None:
        return override
    matches = [p for p in PRICES_PER_MTOK if model.startswith(p)]
    return PRICES_PER_MTOK[max(matches, key=len)] if matches else None


def cost_usd(reply: ChatReply, price: tuple[float, float] | None) -> float:
    if price is None:
        return 0.0
    pin, pout = price
    return (reply.input_tokens * pin + reply.cache_write_tokens * pin * CACHE_WRITE_FACTOR
            + reply.cache_read_tokens * pin * CACHE_READ_FACTOR + reply.output_tokens * pout) / 1e6


class ResponseCache:
    """Answers by request key. ``get`` returns None for a request never answered."""

    def __init__(self, root: Path):
        self.root = Path(root) / "llm" / "responses"

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> ChatReply | None:
        try:
            return ChatReply.from_dict(json.loads(self._path(key).read_text())["reply"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
            return None

    def put(self, request: ChatRequest, reply: ChatReply) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = {"key": request.key, "role": request.role, "request": dataclasses.asdict(request),
                "reply": reply.to_dict(), "written_at": time.time()}
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path(request.key))


@dataclasses.dataclass(frozen=True)
class Totals:
    requests: int = 0
    tokens: int = 0
    cost_usd: float = 0.0


class Ledger:
    """Tokens and cost of every request sent by this campaign's LLM proposers."""

    def __init__(self, root: Path):
        self.path = Path(root) / "llm" / "usage.jsonl"
        self._lock = threading.Lock()

    def record(self, request: ChatRequest, reply: ChatReply, cost: float) -> None:
        line = json.dumps({"key": request.key, "role": request.role, "model": reply.model,
                           "input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens,
                           "cache_read_tokens": reply.cache_read_tokens,
                           "cache_write_tokens": reply.cache_write_tokens, "tokens": reply.total_tokens,
                           "cost_usd": cost, "t": time.time()}, sort_keys=True) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(line)

    def entries(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:      # a line cut by a kill mid-write: its request is paid again, at most
                continue
        return out

    def totals(self) -> Totals:
        entries = self.entries()
        return Totals(requests=len(entries), tokens=sum(int(e.get("tokens", 0)) for e in entries),
                      cost_usd=sum(float(e.get("cost_usd", 0.0)) for e in entries))
