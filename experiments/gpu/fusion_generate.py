"""Write the fusion proposer's candidates for KernelBench problems to files, for `kswarm bench` to verify and time.

    python3 experiments/gpu/fusion_generate.py OUT_DIR PROBLEM.py [PROBLEM.py ...] [--points N]

Each candidate is OUT_DIR/<problem id>__p<k>.py (k: the proposer's point index, likeliest first); a line per
candidate on stdout names its point. Needs no GPU (generation only).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from proposers.fusion.proposer import points  # noqa: E402
from proposers.rewrites.problem import Problem, trace_problem  # noqa: E402
from proposers.templates import InvalidPoint, triton_fused  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("problems", nargs="+")
    ap.add_argument("--points", type=int, default=4)
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in args.problems:
        problem = Problem.from_path(path)
        traced = trace_problem(problem)
        binding = triton_fused.bind(traced) if traced is not None else None
        if binding is None:
            print(json.dumps({"problem": problem.problem_id, "candidate": None, "why": "no fusable segment"}))
            continue
        for k, point in enumerate(points(binding)[:args.points]):
            try:
                src = triton_fused.render(problem, binding, point, None)
            except InvalidPoint as e:
                print(json.dumps({"problem": problem.problem_id, "k": k, "candidate": None, "why": str(e)}))
                continue
            f = out / f"{problem.problem_id}__p{k}.py"
            f.write_text(src)
            print(json.dumps({"problem": problem.problem_id, "k": k, "candidate": str(f), "point": point}))


if __name__ == "__main__":
    main()
