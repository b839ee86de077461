"""An evaluator with several verify slots builds inputs from several threads at once. Each call's inputs must be
exactly those its seed gives alone: otherwise the parent's inputs differ from the child's, and honest candidates
are rejected as ``input_mutated`` or ``mismatch`` (seen on the H200 with six verify slots)."""
from __future__ import annotations

import threading
import types

import torch

from evaluators.inputs import make_inputs

SOURCE = "import torch\ndef get_inputs():\n    return [torch.randn(1 << 19), torch.rand(1 << 17), torch.randint(0, 9, (999,))]\n"


def test_inputs_drawn_from_threads_at_once_are_those_of_their_seed() -> None:
    problem = types.ModuleType("threads_problem")
    exec(SOURCE, problem.__dict__)
    seeds = (3, 4, 5)
    want = {s: make_inputs(problem, s, "cpu") for s in seeds}
    wrong: list[int] = []
    start = threading.Barrier(len(seeds))

    def draw(seed: int) -> None:
        start.wait()
        for _ in range(25):
            got = make_inputs(problem, seed, "cpu")
            if not all(torch.equal(a, b) for a, b in zip(got, want[seed])):
                wrong.append(seed)

    threads = [threading.Thread(target=draw, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, f"{len(wrong)} of {25 * len(seeds)} draws were not their seed's inputs"
