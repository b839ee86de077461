"""``kswarm guide DIR "TEXT"``: guidance from a person to a campaign's LLM proposers, running or stopped.

The text is appended to ``DIR/guidance.jsonl``; every llm proposer re-reads that file before each prompt, so it
reaches the next prompts without a restart (and a resumed campaign keeps it). Candidates whose idea followed it
carry ``params.llm.from_guidance = true``.
"""
from __future__ import annotations

from pathlib import Path

from proposers.llm.guidance import GUIDANCE_FILE, append_guidance, read_guidance
from search.snapshot import SNAPSHOT_JSON, load_snapshot

MAX_CHARS = 4000


class GuideError(ValueError):
    """Guidance that cannot be given; the message says what to do."""


def give_guidance(directory: str | Path, text: str, problem: str | None = None) -> dict:
    """Append ``text`` (for one problem, or all) to the campaign's guidance; returns the entry written."""
    directory = Path(directory)
    if not (directory / SNAPSHOT_JSON).is_file():
        raise GuideError(f"{directory} is not a campaign directory (no {SNAPSHOT_JSON}); start one with kswarm run")
    text = " ".join(text.split())
    if not text:
        raise GuideError("the guidance text is empty; say what the LLM should try or avoid")
    if len(text) > MAX_CHARS:
        raise GuideError(f"the guidance is {len(text)} characters; keep it under {MAX_CHARS} (it goes into every "
                         "prompt)")
    cfg = load_snapshot(directory)
    if problem is not None:
        ids = {f.stem for f in cfg.problem_files}
        if problem not in ids:
            raise GuideError(f"problem {problem!r} is not in this campaign ({', '.join(sorted(ids))})")
    entry = append_guidance(directory, text, problem=problem)
    if not any(p.kind == "llm" for p in cfg.proposers):
        entry["warning"] = "this campaign has no llm proposer; the guidance is kept but nothing reads it"
    return entry


def guidance_so_far(directory: str | Path, problem: str | None = None) -> list[str]:
    return read_guidance(directory, problem)


__all__ = ["GUIDANCE_FILE", "GuideError", "give_guidance", "guidance_so_far"]
