"""Parents are chosen by Pareto rank over the speedup on every hardware class and the error, with near
duplicates skipped, and the campaign's island views choose them that way."""
from pathlib import Path

from popdata import Cand, row

from evaluators.result import Status
from search.island_view import IslandView
from search.parents import select, similarity
from search.population import Population

BODY = """import torch


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = {c}

    def forward(self, x, y):
        {line}
        z = torch.relu(z) * self.scale
        return z.sum(dim=-1, keepdim=True) + y.mean()
"""
SRC = {
    "S": BODY.format(c="1.0", line="z = (x @ y.T)[:, :1]"),
    "A": BODY.format(c="2.0", line="z = x @ y.T"),
    "E": BODY.format(c="3.0", line="z = x @ y.T"),                 # A with one constant changed
    "B": "import torch\n\n\nclass ModelNew(torch.nn.Module):\n    def forward(self, x, y):\n"
         "        return torch.addmm(y.mean().expand(x.shape[0], 1), x, y.T.sum(-1, keepdim=True))\n",
    "C": "import torch\n\n\nclass ModelNew(torch.nn.Module):\n    def forward(self, x, y):\n"
         "        out = torch.empty(x.shape[0], 1)\n        torch.matmul(x, y.sum(0).unsqueeze(-1), out=out)\n"
         "        return out\n",
    "D": "import torch\nimport torch.nn.functional as F\n\n\nclass ModelNew(torch.nn.Module):\n"
         "    def forward(self, x, y):\n        return F.linear(x, y).double().sum(-1, keepdim=True).float()\n",
}


def _pop(tmp_path: Path) -> Population:
    pop = Population.open(tmp_path, writer=True)
    r = lambda tag, hw, s, err=1e-6, **kw: row(tag, hardware=hw, speedup=s, err=err, src=SRC[tag], **kw)  # noqa: E731
    pop.append([
        r("A", "cpu", 3.0), r("A", "h100", 1.0),
        r("B", "cpu", 2.0), r("B", "h100", 4.0),
        r("C", "cpu", 2.5),                               # never tried on h100: worst there, so A dominates it
        r("D", "cpu", 1.5, err=1e-9), r("D", "h100", 0.5, err=1e-9),   # slow but the most exact: on the front
        r("E", "cpu", 3.1),
        r("S", "cpu", 50.0, status=Status.SUSPECT_SPEEDUP, minutes=1),  # never a parent: not accepted
    ])
    return pop


def ids(table) -> list[str]:
    return table.column("candidate_id").to_pylist()


def cid(tag: str) -> str:
    return Cand(source=SRC[tag]).id


def test_similarity_ignores_layout_and_sees_real_changes() -> None:
    assert similarity(SRC["A"], SRC["A"].replace("    z = torch.relu", "    # note\n    z = torch.relu")) == 1.0
    assert similarity(SRC["A"], SRC["E"]) >= 0.95
    for a in SRC:
        for b in SRC:
            if a < b and {a, b} & {"A", "E"} != {"A", "E"} and "S" not in (a, b):
                assert similarity(SRC[a], SRC[b]) < 0.8, (a, b)


def test_parents_by_pareto_rank_across_classes_without_near_duplicates(tmp_path: Path) -> None:
    pop = _pop(tmp_path)
    t = pop.table
    # speedup on cpu alone would give E, A, C, B, D; with h100 and the error as objectives the front is
    # {A, B, D, E} (E: best on cpu), ordered by mean speedup; C is dominated by A
    every = select(t, "add", "cpu", 10, hardwares=("cpu", "h100"), near_duplicate=1.01)
    assert ids(every) == [cid(x) for x in "BAEDC"]
    # E is a near duplicate of A, which is chosen first
    parents = select(t, "add", "cpu", 10, hardwares=("cpu", "h100"))
    assert ids(parents) == [cid(x) for x in "BADC"]
    assert ids(select(t, "add", "cpu", 2, hardwares=("cpu", "h100"))) == [cid("B"), cid("A")]
    # on its own class, h100's island holds A, B and D; C and E were never accepted there
    assert ids(select(t, "add", "h100", 10, hardwares=("cpu", "h100"))) == [cid(x) for x in "BAD"]
    # with the cpu class alone: E (fastest) and D (most exact) are the front; A is E's near duplicate
    assert ids(select(t, "add", "cpu", 10)) == [cid(x) for x in "EDCB"]
    assert select(t, "add", "cpu", 0).num_rows == 0 and select(t, "other", "cpu", 3).num_rows == 0
    # an island population of 2: only B and A (the two best-ranked) may be parents
    assert ids(select(t, "add", "cpu", 10, hardwares=("cpu", "h100"), pool=2)) == [cid("B"), cid("A")]
    # the chosen rows are whole island rows of the right class
    assert set(parents.column("hardware").to_pylist()) == {"cpu"}
    assert set(parents.column("status").to_pylist()) == {"accepted"}


def test_island_view_serves_the_selected_parents(tmp_path: Path) -> None:
    pop = _pop(tmp_path)
    view = IslandView(pop, "/p/level1/add.py", "cpu", hardwares=("cpu", "h100"))
    best = view.best(3)
    assert [s.candidate.id for s in best] == [cid(x) for x in "BAD"]
    assert [s.speedup for s in best] == [2.0, 3.0, 1.5]          # the speedup on the view's own class
    assert best[0].candidate.source == SRC["B"]
    # the campaign's evolution.parents caps what any proposer is served
    capped = IslandView(pop, "/p/level1/add.py", "cpu", hardwares=("cpu", "h100"), max_parents=2)
    assert [s.candidate.id for s in capped.best(5)] == [cid("B"), cid("A")]
