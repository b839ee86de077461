"""Views: best per problem x hardware, top-k, lineage, recent failures, counts, seen ids."""
from pathlib import Path

import pytest
from popdata import cid, row

from evaluators.result import Status
from search import views
from search.population import Population


@pytest.fixture
def pop(tmp_path: Path) -> Population:
    p = Population.open(tmp_path, writer=True)
    p.append([
        row("a", speedup=1.2, minutes=0),
        row("b", speedup=2.0, parents=(cid("a"),), generation=1, minutes=1),
        row("c", speedup=None, status=Status.MISMATCH, reason="max_abs_err 3 > 1e-4", minutes=2),
        row("s", speedup=40.0, status=Status.SUSPECT_SPEEDUP, minutes=3),
        row("d", speedup=1.7, hardware="h100", parents=(cid("b"),), generation=2, minutes=4),
        row("e", speedup=3.0, problem="/p/level2/fused.py", minutes=5),
        row("f", speedup=None, status=Status.TIMEOUT, problem="/p/level2/fused.py", minutes=6),
        row("g", speedup=2.0, compile_seconds=0.5, minutes=7),   # ties "b" on speedup, compiles faster
    ])
    return p


def test_best_is_one_accepted_row_per_problem_and_hardware(pop: Population) -> None:
    b = pop.best()
    got = {(r["problem_id"], r["hardware"]): (r["candidate_id"], r["speedup"]) for r in b.to_pylist()}
    assert got == {("add", "cpu"): (cid("g"), 2.0), ("add", "h100"): (cid("d"), 1.7),
                   ("fused", "cpu"): (cid("e"), 3.0)}


def test_suspect_speedups_are_never_best(pop: Population) -> None:
    assert cid("s") not in pop.best().column("candidate_id").to_pylist()
    assert cid("s") not in pop.top("add", "cpu", k=10).column("candidate_id").to_pylist()


def test_top_k_is_ordered_best_first(pop: Population) -> None:
    assert pop.top("add", "cpu", k=2).column("candidate_id").to_pylist() == [cid("g"), cid("b")]
    assert pop.top("add", "cpu", k=10).num_rows == 3


def test_lineage_follows_parents_across_hardware(pop: Population) -> None:
    assert pop.lineage(cid("d")).column("candidate_id").to_pylist() == [cid("a"), cid("b"), cid("d")]
    assert pop.lineage("unknown").num_rows == 0


def test_recent_failures_newest_first_with_reasons(pop: Population) -> None:
    f = pop.recent_failures(k=2)
    assert f.column("status").to_pylist() == ["timeout", "suspect_speedup"]
    only = pop.recent_failures(problem_id="add", hardware="cpu")
    assert only.column("reason").to_pylist() == ["suspect_speedup", "max_abs_err 3 > 1e-4"]


def test_status_counts_and_counts_by_group(pop: Population) -> None:
    assert pop.status_counts() == {"accepted": 5, "mismatch": 1, "suspect_speedup": 1, "timeout": 1}
    c = views.counts(pop.table, ("hardware", "status")).to_pylist()
    assert {"hardware": "h100", "status": "accepted", "count": 1} in c


def test_seen_ids_and_membership(pop: Population) -> None:
    assert pop.seen_candidate_ids() == {cid(t) for t in "abcsdefg"}
    assert pop.seen_candidate_ids("fused") == {cid("e"), cid("f")}
    assert pop.evaluated("add", cid("d"), "h100") and not pop.evaluated("add", cid("d"), "cpu")


def test_views_follow_appends(pop: Population) -> None:
    before = pop.version
    pop.append([row("h", speedup=5.0)])
    assert pop.version > before
    assert pop.top("add", "cpu", k=1).column("candidate_id").to_pylist() == [cid("h")]


def test_candidate_dicts_rebuild_candidates(pop: Population) -> None:
    from proposers.base import Candidate
    d = views.candidate_dicts(pop.top("add", "cpu", k=1))[0]
    assert Candidate.from_dict(d).id == d["id"] == cid("g")


def test_best_kept_up_per_append_equals_best_recomputed(tmp_path: Path) -> None:
    import random
    rng = random.Random(5)
    pop = Population.open(tmp_path / "inc", writer=True)
    for batch in range(15):
        pop.append([row(f"{batch}-{i}", problem=f"/p/level1/{rng.choice('abc')}.py",
                        hardware=rng.choice(["cpu", "h100"]), speedup=rng.choice([1.0, 1.5, 2.0, 2.5]),
                        compile_seconds=rng.choice([1.0, 2.0]),
                        status=rng.choice([Status.ACCEPTED, Status.MISMATCH, Status.SUSPECT_SPEEDUP]))
                    for i in range(rng.randint(1, 6))])
        assert pop.best().equals(views.best(pop.table))
        assert pop.status_counts() == views.status_counts(pop.table)
    assert Population.open(tmp_path / "inc").best().equals(pop.best())


def test_island_index_matches_a_full_scan(tmp_path: Path) -> None:
    import random
    rng = random.Random(9)
    pop = Population.open(tmp_path / "isl", writer=True)
    for batch in range(8):
        pop.append([row(f"{batch}-{i}", problem=f"/p/level1/{rng.choice('abc')}.py",
                        hardware=rng.choice(["cpu", "h100"]), minutes=batch * 10 + i) for i in range(5)])
        if batch == 4:
            pop.compact(min_parts=1)
    for p in "abc":
        for hw in ("cpu", "h100", None):
            assert pop.island(p, hw).equals(views.select(pop.table, problem_id=p, hardware=hw))
    assert pop.island("nope", "cpu").num_rows == 0
    assert pop.islands() == sorted(set(zip(pop.table.column("problem_id").to_pylist(),
                                           pop.table.column("hardware").to_pylist(), strict=True)))
    assert Population.open(tmp_path / "isl").table.equals(pop.table)


def test_chunkwise_take_keeps_the_requested_order(pop: Population) -> None:
    import numpy as np
    import pyarrow as pa
    t = pa.concat_tables([pop.table.slice(0, 3), pop.table.slice(3, 2), pop.table.slice(5)])
    for idx in ([0, 1, 2], [7, 0, 4, 3], [], [5, 5, 1]):
        assert views.take(t, np.array(idx, dtype=np.int64)).equals(pop.table.take(pa.array(idx, pa.int64())))


def test_cache_keeps_few_bounded_chunks(tmp_path: Path, monkeypatch) -> None:
    import search.population as population
    monkeypatch.setattr(population, "CHUNK_ROWS", 8)
    pop = Population.open(tmp_path / "chunks", writer=True)
    for b in range(40):
        pop.append([row(f"{b}-{i}", minutes=b) for i in range(1 + b % 3)])
    chunks = pop.table.column("eval_key").chunks
    assert max(len(c) for c in chunks) <= 8
    assert len(chunks) <= len(pop) // 8 + 1 + 4
    again = Population.open(tmp_path / "chunks")
    assert again.table.equals(pop.table) and len(again.table.column("eval_key").chunks) <= len(pop) // 8 + 2
