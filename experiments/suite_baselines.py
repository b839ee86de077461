"""Eager against torch.compile on every bundled problem, measured the way the evaluator measures baselines: each in
its own clean child process, fresh inputs for every call, median with a 95% CI, repeated until the CI target or the
time cap.

    python experiments/suite_baselines.py [--device cpu] [--scale default] [--time-cap 2] \
        [--out experiments/results/2026-11-28-suite-eager-vs-compile-cpu.md]
"""
from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import sys
import time
from pathlib import Path

import torch

from evaluators.baseline import measure_baseline
from evaluators.judge import Rejected, build_reference
from evaluators.machines import cpu_model_name
from evaluators.policy import TimingPolicy
from evaluators.sandbox import ChildFailed, SandboxLimits
from evaluators.stats import summarize

ROOT = Path(__file__).resolve().parent / "problems"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scale", default="default")
    ap.add_argument("--time-cap", type=float, default=2.0)
    ap.add_argument("--cache-dir", default="tmp/suite-baselines-cache")
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default="", help="substring of the problem paths to keep")
    args = ap.parse_args()
    timing = TimingPolicy(time_cap_s=args.time_cap, min_samples=10)
    limits = SandboxLimits(timeout_s=600, memory_mb=16384)
    rng = random.Random(0)
    lines = []
    started = time.time()
    for path in sorted(ROOT.glob("level*/*.py")):
        if args.only not in str(path):
            continue
        ref = build_reference(str(path), args.scale, args.device, seed=0)
        row = [path.parent.name, path.stem]
        stats = {}
        for name in ("eager", "compile"):
            try:
                m = measure_baseline(name, ref, timing=timing, limits=limits, cache_dir=Path(args.cache_dir),
                                     rng=rng)
                stats[name] = (summarize(m["samples_ns"]), m["compile_seconds"])
            except (Rejected, ChildFailed) as e:
                stats[name] = (None, e.reason)
        e, c = stats["eager"][0], stats["compile"][0]
        fmt = lambda t: "failed" if t is None else f"{t.median_ms:.3f} [{t.ci_low_ms:.3f}, {t.ci_high_ms:.3f}] n={t.count}"  # noqa: E731
        ratio = f"{e.median_ms / c.median_ms:.2f}x" if e and c else "-"
        row += [fmt(e), fmt(c), ratio, f"{stats['compile'][1]:.1f}" if c else str(stats["compile"][1])[:80]]
        lines.append(row)
        print(" | ".join(row), file=sys.stderr, flush=True)
    header = (f"# Eager vs torch.compile on the bundled suite ({args.device}, scale {args.scale})\n\n"
              f"Date: {dt.date.today()}. Command: `python experiments/suite_baselines.py --device {args.device} "
              f"--scale {args.scale} --time-cap {args.time_cap}`\n\n"
              f"Machine: {cpu_model_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
              f"Python {platform.python_version()}. Wall time {time.time() - started:.0f} s.\n\n"
              "Each baseline runs in its own clean child (the evaluator's harness): fresh inputs every call, "
              "median over calls with the 95% CI of the median (distribution-free) and the sample count; "
              f"sampling stops at a +-2% CI or {args.time_cap} s. compile = `torch.compile` default mode, its "
              "compile time (seconds, including the first call) in the last column. eager/compile > 1 means "
              "torch.compile is faster.\n\n")
    table = ["| level | problem | eager ms [CI] | compile ms [CI] | eager/compile | compile s |",
             "|---|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in lines]
    text = header + "\n".join(table) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
