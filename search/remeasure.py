"""The ``remeasure`` step of export: a fresh verification and timing of an exported kernel, baselines sandwiched."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from evaluators.pipeline import evaluate
from evaluators.result import EvalResult
from search.snapshot import load_snapshot

REMEASURE_PROCESSES = 3


def remeasurer(campaign_dir: str | Path) -> Callable[[str, str, str], EvalResult]:
    """A callable (problem_path, source, hardware) -> EvalResult using the campaign's policies, with the baselines
    measured again before and after the candidate in clean processes, and the paired timing spread over at least
    ``REMEASURE_PROCESSES`` pairs of fresh processes."""
    cfg = load_snapshot(campaign_dir)
    cache = cfg.campaign.cache_dir(Path(campaign_dir))     # the campaign's caches: None, the node's own
    scales = {str(f): spec.scale for spec in cfg.problems for f in spec.files}

    def run(problem_path: str, source: str, hardware: str) -> EvalResult:
        return evaluate(cfg.bench_request(problem_path, source, hardware, scales.get(problem_path, "default"),
                                          cache, rounds=2,
                                          processes=max(REMEASURE_PROCESSES, cfg.timing.processes)))
    return run
