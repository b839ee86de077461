"""Guidance from people: text in the campaign file, and lines appended to ``DIR/guidance.jsonl`` while a campaign
runs (``kswarm guide DIR "..."``). The proposer re-reads the file before every prompt, so a line reaches the next
prompts without a restart."""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

GUIDANCE_FILE = "guidance.jsonl"


def append_guidance(campaign_dir: str | Path, text: str, *, problem: str | None = None) -> dict:
    """Append one entry (a single ``write`` in append mode, so a concurrent reader sees whole lines)."""
    entry = {"text": " ".join(text.split()), "at": dt.datetime.now(dt.timezone.utc).isoformat()}
    if problem:
        entry["problem"] = problem
    path = Path(campaign_dir) / GUIDANCE_FILE
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)
    return entry


def read_guidance(campaign_dir: str | Path, problem: str | None = None) -> list[str]:
    """The texts given so far, oldest first; an entry for another problem is left out."""
    try:
        lines = (Path(campaign_dir) / GUIDANCE_FILE).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("text") and (entry.get("problem") in (None, problem)):
            out.append(entry["text"])
    return out
