"""Summarise a campaign for the offline-proposer benchmark: the best verified speedup per problem over the faster
of eager and torch.compile, the geomean per level and over levels 2 and 3, and fast_1.

    python experiments/offline_summary.py runs/offline_suite_cpu > experiments/results/<date>-offline-suite-cpu.md
"""
from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from search import views
from search.snapshot import load_snapshot
from search.population import read_population


def main(campaign_dir: str) -> None:
    cfg = load_snapshot(campaign_dir)
    population = read_population(campaign_dir)
    problems = sorted({(Path(f).parent.name, Path(f).stem) for f in cfg.problem_files})
    for target in cfg.targets:
        table_for(campaign_dir, views.select(population, hardware=target.hardware), target.hardware, problems)


def table_for(campaign_dir: str, table, hardware: str, problems: list[tuple[str, str]]) -> None:
    rows = table.to_pylist()
    tried = {r["problem_id"] for r in rows}
    best = {(r["problem_id"], r["hardware"]): r for r in views.best(table).to_pylist()}
    counts = views.status_counts(table)
    print(f"# Offline proposers on the bundled suite: `{campaign_dir}`, hardware `{hardware}`\n")
    print(f"{table.num_rows} evaluations; statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print("\nSpeedup = the faster of eager and torch.compile over the candidate (medians, 95% CI of the ratio); "
          "only candidates the verifier accepted count. A problem with no accepted candidate faster than the "
          "baseline counts as 1.0x in the deployed geomean (the baseline is kept).\n")
    print("| level | problem | best speedup [CI] | candidate ms | eager ms | compile ms | proposer | recipe |")
    print("|---|---|---|---|---|---|---|---|")
    by_level: dict[str, list[float]] = defaultdict(list)
    for level, pid in problems:
        r = best.get((pid, hardware))
        if pid not in tried:
            print(f"| {level} | {pid} | not reached within the budget | | | | | |")
            by_level[level].append(float("nan"))
            continue
        if r is None:
            print(f"| {level} | {pid} | no accepted candidate | | | | | |")
            by_level[level].append(float("nan"))
            continue
        params = json.loads(r["params"] or "{}")
        recipe = "+".join(params.get("rewrites", [])) or params.get("template", "")
        print(f"| {level} | {pid} | {r['speedup']:.2f}x [{r['speedup_ci_low']:.2f}, {r['speedup_ci_high']:.2f}] | "
              f"{r['candidate_ms']:.3f} | {r['eager_ms']:.3f} | {r['compile_ms']:.3f} | {r['proposer']} | "
              f"{recipe} |")
        by_level[level].append(r["speedup"])

    def geo(xs: list[float]) -> float:
        return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")

    print("\n| levels | problems | with an accepted candidate | fast_1 | geomean (best accepted) | "
          "geomean deployed (max(best, 1)) |")
    print("|---|---|---|---|---|---|")
    groups = [(lv, [lv]) for lv in sorted(by_level)] + [("level2+level3", ["level2", "level3"])]
    for name, levels in groups:
        xs = [x for lv in levels for x in by_level.get(lv, [])]
        acc = [x for x in xs if not math.isnan(x)]
        fast = sum(1 for x in acc if x > 1.0)
        print(f"| {name} | {len(xs)} | {len(acc)} | {fast}/{len(xs)} | {geo(acc):.3f} | "
              f"{geo([max(1.0, x) if not math.isnan(x) else 1.0 for x in xs]):.3f} |")


if __name__ == "__main__":
    main(sys.argv[1])
