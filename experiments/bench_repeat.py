"""Repeatability of `kswarm bench`: the same candidate benched N times, each in a fresh process, one after the other.

Reports every run's point estimate and 95% interval, whether every point lies inside every other run's interval,
and max/min of the points; also each run's wall time and seconds per stage. Goals (issue 9): on the CPU every point
inside every other interval and max/min <= 1.10; on the H200 at --scale large max/min <= 1.03.

    python experiments/bench_repeat.py [--runs 5] [--device cpu] [--scale default] [--time-cap 10] [--processes 3] \
        [--problem P] [--candidate C] [--cache-dir DIR] [--json OUT.json] > experiments/results/<date>-bench-repeatability.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBLEM = "experiments/problems/level2/stacked_linears.py"
CANDIDATE = "experiments/candidates/stacked_linears_merged.py"


def bench_once(args: argparse.Namespace, cache: str) -> dict:
    cmd = [sys.executable, "-m", "kswarm.cli", "bench", args.problem, args.candidate, "--device", args.device,
           "--scale", args.scale, "--time-cap", str(args.time_cap), "--processes", str(args.processes), "--cache-dir", cache,
           "--json"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"})
    wall = time.monotonic() - t0
    try:
        d = json.loads(p.stdout)
    except ValueError:
        return {"status": f"no result (rc {p.returncode})", "reason": p.stderr.strip()[-300:], "wall_s": wall}
    return {**d, "wall_s": wall}


def spread(runs: list[dict]) -> dict:
    ok = [r for r in runs if r.get("speedup") is not None]
    points = [r["speedup"] for r in ok]
    inside = all(o["speedup_ci"][0] <= r["speedup"] <= o["speedup_ci"][1] for r in ok for o in ok if o is not r)
    return {"runs": len(runs), "timed": len(ok), "every_point_inside_every_interval": inside,
            "max_over_min": max(points) / min(points) if points else None}


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scale", default="default")
    ap.add_argument("--time-cap", type=float, default=10.0)
    ap.add_argument("--processes", type=int, default=3, help="pairs of fresh processes per bench (kswarm bench's own "
                    "default)")
    ap.add_argument("--problem", default=PROBLEM)
    ap.add_argument("--candidate", default=CANDIDATE)
    ap.add_argument("--cache-dir", default=None, help="default: a fresh folder (the first run measures the baselines)")
    ap.add_argument("--json", default=None, help="also write every run's full result here")
    args = ap.parse_args()
    cache = args.cache_dir or tempfile.mkdtemp(prefix="kswarm-bench-repeat-")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    load_before = load_average()
    runs = []
    for i in range(args.runs):
        runs.append(bench_once(args, cache))
        r = runs[-1]
        # progress as it goes, so that a run cut short still says what it measured
        sys.stderr.write(f"run {i + 1}/{args.runs}: {r.get('status')} {r.get('speedup')} {r.get('speedup_ci')} "
                         f"wall {r['wall_s']:.0f} s\n")
    s = spread(runs)
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": s, "runs": runs}, indent=2, default=str))
    goal = 1.03 if args.device.startswith("cuda") else 1.10
    print(f"# `kswarm bench` repeatability: {Path(args.candidate).stem} on {args.device}, scale {args.scale}\n")
    print(f"- command: `python experiments/bench_repeat.py --runs {args.runs} --device {args.device} --scale "
          f"{args.scale} --time-cap {args.time_cap:g} --processes {args.processes}`")
    print(f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; device "
          f"{runs[0].get('device_name') or args.device}; load average (1, 5, 15 min) {load_before} before, "
          f"{load_average()} after")
    print(f"- commit {commit}; each run is a fresh `kswarm bench` process; baseline records in {cache}\n")
    print("| run | status | speedup [95% CI] | blocks x calls | candidate ms | faster baseline | wall s | "
          "stages (s) |\n|---|---|---|---|---|---|---:|---|")
    for i, r in enumerate(runs, 1):
        t = r.get("timing") or {}
        ci = r.get("speedup_ci") or [None, None]
        sp = f"{r['speedup']:.3f}x [{ci[0]:.3f}, {ci[1]:.3f}]" if r.get("speedup") else "-"
        stages = " ".join(f"{k} {v:.1f}" for k, v in sorted((r.get("stage_s") or {}).items()))
        print(f"| {i} | {r['status']} | {sp} | {t.get('blocks', '-')} x {t.get('calls_per_block', '-')} | "
              f"{r.get('candidate_ms') or 0:.4f} | {t.get('faster_baseline', '-')} | {r['wall_s']:.0f} | {stages} |")
    mm = s["max_over_min"]
    print(f"\n- every point inside every other run's interval: **{s['every_point_inside_every_interval']}**")
    print(f"- max/min of the points: **{mm:.3f}**" if mm else "- max/min: no timed runs")
    print(f"- goal: every point inside every interval and max/min <= {goal:.2f}: "
          f"**{'met' if s['every_point_inside_every_interval'] and mm and mm <= goal else 'not met'}**")


if __name__ == "__main__":
    main()
