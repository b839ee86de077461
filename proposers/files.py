"""Candidates written by hand: ``ModelNew`` files in a folder, matched to problems by file name.

A file applies to a problem when its stem is the problem id or starts with ``<problem id>__`` (for several
variants of one problem). An optional first-line comment ``# backend: cpp`` names the backend.
"""
from __future__ import annotations

import logging
import pathlib
import re
from collections.abc import Mapping
from typing import Any

from proposers.base import BACKENDS, Candidate, Proposer, ProblemView

log = logging.getLogger(__name__)
_BACKEND_RE = re.compile(r"^#\s*backend:\s*(\w+)", re.MULTILINE)


class FilesProposer(Proposer):
    name = "files"

    def __init__(self, paths: str | list[str] = ()):
        self.paths = [paths] if isinstance(paths, str) else list(paths)
        self._proposed: set[str] = set()

    def _files_for(self, problem_id: str) -> list[pathlib.Path]:
        found = []
        for root in self.paths:
            p = pathlib.Path(root)
            files = [p] if p.is_file() else sorted(p.rglob("*.py")) if p.is_dir() else []
            for f in files:
                if f.stem == problem_id or f.stem.startswith(problem_id + "__"):
                    found.append(f)
        return found

    def propose(self, view: ProblemView, budget: int) -> list[Candidate]:
        out: list[Candidate] = []
        for f in self._files_for(view.problem_id):
            if len(out) >= budget:
                break
            try:
                source = f.read_text()
            except OSError as e:
                log.warning("cannot read candidate file %s: %s", f, e)
                continue
            m = _BACKEND_RE.search(source[:500])
            backend = m.group(1) if m and m.group(1) in BACKENDS else "torch"
            c = Candidate(source=source, params={"file": f.name}, proposer=self.name, backend=backend,
                          hardware=view.hardware, problem_id=view.problem_id)
            if c.id not in self._proposed:
                self._proposed.add(c.id)
                out.append(c)
        return out

    def get_state(self) -> dict[str, Any]:
        return {"proposed": sorted(self._proposed)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._proposed = set(state.get("proposed", ()))
