"""IslandView gives proposers the best and the recent failures of their island as Candidates."""
from pathlib import Path

from popdata import cid, row

from evaluators.result import Status
from proposers.base import ProblemView
from search.island_view import IslandView
from search.population import Population


def test_island_view_is_a_problem_view(tmp_path: Path) -> None:
    pop = Population.open(tmp_path, writer=True)
    pop.append([row("a", speedup=1.2), row("b", speedup=2.0, parents=(cid("a"),)),
                row("s", speedup=30.0, status=Status.SUSPECT_SPEEDUP, minutes=1),
                row("m", speedup=None, status=Status.MISMATCH, reason="off by 3", minutes=2),
                row("h", speedup=9.0, hardware="h100")])
    view = IslandView(pop, "/p/level1/add.py", "cpu", near_duplicate=1.01)   # these rows differ only in comments
    assert isinstance(view, ProblemView) and view.problem_id == "add"
    best = view.best(5)
    assert [s.candidate.id for s in best] == [cid("b"), cid("a")]
    assert best[0].speedup == 2.0 and best[0].candidate.parent_ids == (cid("a"),)
    fails = view.failures()
    assert [(f.candidate.id, f.status, f.reason) for f in fails] == [
        (cid("m"), "mismatch", "off by 3"), (cid("s"), "suspect_speedup", "suspect_speedup")]
    pop.append([row("c", speedup=3.0)])
    assert view.best(1)[0].candidate.id == cid("c")
