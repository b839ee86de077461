"""Pareto ranks and fronts: dominated, failed and suspect candidates are kept out of a front."""
from pathlib import Path

import numpy as np
from popdata import cid, row

from evaluators.result import Status
from search import pareto
from search.population import Population
from search.schema import rows_to_table


def test_ranks_of_known_points() -> None:
    pts = np.array([[3, 1], [1, 3], [2, 2], [1, 1], [0.5, 0.5], [3, 1]])
    assert pareto.pareto_ranks(pts).tolist() == [0, 0, 0, 1, 2, 0]


def test_minimised_objectives_and_nan_as_worst() -> None:
    pts = np.array([[2.0, 1e-3], [1.0, 1e-6], [1.5, 1e-2], [np.nan, 0.0]])
    assert pareto.pareto_ranks(pts, maximize=(True, False)).tolist() == [0, 0, 1, 0]


def test_front_trades_speed_against_error() -> None:
    t = rows_to_table([
        row("fast", speedup=3.0, err=1e-3), row("exact", speedup=1.5, err=0.0),
        row("worse", speedup=1.4, err=1e-3), row("cheat", speedup=90.0, err=0.0, status=Status.SUSPECT_SPEEDUP),
        row("wrong", speedup=5.0, err=1.0, status=Status.MISMATCH),
    ])
    assert pareto.front(t, "add", "cpu").column("candidate_id").to_pylist() == [cid("fast"), cid("exact")]
    ranks = pareto.ranked(t, "add", "cpu")
    assert ranks.column("pareto_rank").to_pylist() == [0, 0, 1]


def test_exact_ties_keep_the_cheaper_candidate() -> None:
    t = rows_to_table([row("slowbuild", speedup=2.0, err=1e-5, compile_seconds=9.0),
                       row("quickbuild", speedup=2.0, err=1e-5, compile_seconds=1.0)])
    assert pareto.front(t, "add", "cpu").column("candidate_id").to_pylist() == [cid("quickbuild")]


def test_cross_hardware_ranks(tmp_path: Path) -> None:
    pop = Population.open(tmp_path, writer=True)
    pop.append([row("both", speedup=2.0, hardware="cpu"), row("both", speedup=2.0, hardware="h100"),
                row("cpu_only", speedup=3.0, hardware="cpu"), row("meh", speedup=1.0, hardware="cpu"),
                row("meh", speedup=1.0, hardware="h100")])
    r = pareto.candidate_ranks(pop.table, "add")
    got = dict(zip(r.column("candidate_id").to_pylist(), r.column("pareto_rank").to_pylist(), strict=True))
    assert got == {cid("both"): 0, cid("cpu_only"): 0, cid("meh"): 1}
    assert r.column("speedup@h100").to_pylist()[r.column("candidate_id").to_pylist().index(cid("cpu_only"))] is None


def test_empty_island_has_an_empty_front() -> None:
    t = rows_to_table([row("a", status=Status.TIMEOUT, speedup=None)])
    assert pareto.front(t, "add", "cpu").num_rows == 0
    assert pareto.candidate_ranks(t, "add").num_rows == 0
