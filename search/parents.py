"""Parent selection for one island: Pareto rank over every hardware class of the problem, then diversity.

A candidate's objectives are its speedup on each of the campaign's hardware classes and its worst error
(``search.pareto.candidate_ranks``); ties go to the mean speedup, then the lower compile time, then the shorter
source. Walking that order, a candidate whose source is a near duplicate of a parent already chosen is skipped,
so the parents a proposer sees differ in more than a constant or a comment.
"""
from __future__ import annotations

import difflib
import io
import tokenize
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from search import pareto, views


def _tokens(source: str) -> list[str]:
    """The source's code tokens, without comments, blank lines or indentation; the raw lines if it does not
    tokenize."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER}
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type not in skip]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [line.strip() for line in source.splitlines() if line.strip()]


def similarity(a: str, b: str) -> float:
    """How alike two sources are, 0..1, over their code tokens (1.0: the same code up to comments and layout)."""
    return difflib.SequenceMatcher(None, _tokens(a), _tokens(b), autojunk=False).ratio()


def _near(a: list[str], b: list[str], cut: float) -> bool:
    """Whether two token lists are at least ``cut`` alike; the cheap upper bounds first, which most pairs fail."""
    m = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return m.real_quick_ratio() >= cut and m.quick_ratio() >= cut and m.ratio() >= cut


def select(table: pa.Table, problem_id: str, hardware: str, k: int, *, hardwares: Sequence[str] = (),
           near_duplicate: float = 0.95, pool: int | None = None) -> pa.Table:
    """Up to ``k`` accepted rows of the (problem, hardware) island, as parents, in selection order.

    ``hardwares`` are the classes whose speedups are objectives (the island's own class is always one); a
    candidate not accepted on a class counts as worst there. Rows whose code-token similarity to a chosen parent
    is at least ``near_duplicate`` are skipped (a value above 1 keeps every row). ``pool`` is the island's
    population: only that many of its best-ranked candidates are candidates for parenthood."""
    island = views.accepted(views.select(table, problem_id=problem_id, hardware=hardware))
    if k <= 0 or island.num_rows == 0:
        return island.schema.empty_table()
    hws = sorted(set(hardwares) | {hardware})
    ranks = pareto.candidate_ranks(table, problem_id, hws)
    here = ranks.filter(pc.is_valid(ranks.column(f"speedup@{hardware}")))
    row_of = {c: i for i, c in enumerate(island.column("candidate_id").to_pylist())}  # one row each (eval_key)
    sources = island.column("source").to_pylist()
    chosen: list[int] = []
    kept: list[list[str]] = []
    for cid in here.column("candidate_id").to_pylist()[:pool]:
        toks = _tokens(sources[row_of[cid]])
        if near_duplicate <= 1.0 and any(_near(toks, other, near_duplicate) for other in kept):
            continue
        chosen.append(row_of[cid])
        kept.append(toks)
        if len(chosen) == k:
            break
    return island.take(pa.array(chosen, pa.int64()))
