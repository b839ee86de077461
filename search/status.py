"""``kswarm status``: what a campaign directory holds, read without disturbing a running driver."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from search.checkpoint import load_checkpoint
from search.snapshot import load_snapshot
from search.population import Population
from search.throughput import Throughput


def campaign_status(directory: str | Path) -> dict[str, Any]:
    d = Path(directory)
    if not (d / "campaign.json").exists():
        raise FileNotFoundError(f"{d} is not a campaign directory (no campaign.json); start one with kswarm run")
    cfg = load_snapshot(d)
    with Population.open(d) as pop:     # a reader: a running driver is not disturbed
        evaluations, statuses, best = len(pop), pop.status_counts(), pop.best().to_pylist()
        table = pop.table
    ck = load_checkpoint(d)
    return {
        "campaign": cfg.campaign.name,
        "directory": str(d),
        "evaluations": evaluations,
        "budget": {"max_evaluations": cfg.budget.max_evaluations, "max_minutes": cfg.budget.max_minutes},
        "statuses": statuses,
        "best": [{k: r[k] for k in ("problem_id", "hardware", "speedup", "candidate_id", "candidate_ms",
                                    "eager_ms", "compile_ms")} for r in best],
        "generation": (ck.generations.get("campaign", 0) if ck else 0),
        "in_flight": len(ck.in_flight) if ck else 0,
        "elapsed_s": ck.elapsed_s if ck else 0.0,
        "checkpoint_written_at": ck.written_at if ck else None,
        "throughput": Throughput.from_table(table).summary(ck.elapsed_s if ck else 0.0),
    }
