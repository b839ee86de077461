"""A campaign of 1,000 candidates through the real loop, journal and checkpoint, on 16 simulated devices, records
every candidate exactly once with a final status, leaves nothing in flight, and its driver's memory stays nearly flat
as the population grows (the 10,000-candidate figures: ``experiments/load_10k.py``)."""
from __future__ import annotations

from pathlib import Path

from experiments.load_10k import run_load

EVALUATIONS = 1000
GROWTH_MB = 100      # generous: the rows themselves take about 1 MB; a leak per evaluation of 100 kB would show


def test_a_thousand_candidates_are_recorded_once_in_bounded_memory(tmp_path: Path) -> None:
    res = run_load(tmp_path / "load", EVALUATIONS, problems=8, devices=16, slots=2, every=100)
    assert res["rows"] == EVALUATIONS
    assert (res["duplicates"], res["lost"], res["not_final"], res["in_flight"]) == (0, 0, 0, 0)
    done = [n for n, _, _ in res["samples"]]
    assert done[0] <= 100 and done[-1] == EVALUATIONS
    first, last = res["samples"][0][1], res["samples"][-1][1]
    assert last - first < GROWTH_MB, f"driver RSS grew {last - first:.0f} MB over {EVALUATIONS} evaluations"
