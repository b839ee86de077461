"""Time the eager forward of every bundled problem at its default size and print a Markdown table.

Each problem file is imported standalone (importlib, no project code), seeded with torch.manual_seed(0), built
with Model(*get_init_inputs()) and called on get_inputs(): 3 warm-up calls, then the median of 20 timed calls,
under torch.no_grad() and torch's default thread count.

    python experiments/suite_eager_times.py [--problems DIR] [--warmup 3] [--repeats 20] [--scale default]
"""
from __future__ import annotations

import argparse
import os
import importlib.util
import pathlib
import statistics
import sys
import time

import torch

HERE = pathlib.Path(__file__).resolve().parent


def load(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(f"suite_problem_{path.parent.name}_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def time_problem(path: pathlib.Path, warmup: int, repeats: int, scale: str, device: str) -> tuple[float, str]:
    mod = load(path)
    if scale != "default":
        for name, value in mod.SCALES[scale].items():
            setattr(mod, name, value)
    torch.manual_seed(0)
    model = mod.Model(*mod.get_init_inputs()).to(device)
    inputs = [t.to(device) if isinstance(t, torch.Tensor) else t for t in mod.get_inputs()]
    shapes = ", ".join("x".join(map(str, t.shape)) for t in inputs if isinstance(t, torch.Tensor))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    samples = []
    with torch.no_grad():
        for _ in range(warmup):
            model(*inputs)
        sync()
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(*inputs)
            sync()
            samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples), shapes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default=str(HERE / "problems"))
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--scale", default="default", help="'default' or a key of each problem's SCALES")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    root = pathlib.Path(args.problems)
    files = sorted(root.glob("level*/*.py"))
    if not files:
        print(f"no problem files under {root}", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"scale {args.scale}, median of {args.repeats} after {args.warmup} warm-ups, "
          f"load average at start {os.getloadavg()[0]:.2f}\n")
    print("| level | problem | input shapes | eager ms (median) |")
    print("|---|---|---|---:|")
    total = 0.0
    slow = []
    for path in files:
        ms, shapes = time_problem(path, args.warmup, args.repeats, args.scale, args.device)
        total += ms
        if ms > 200:
            slow.append(path.stem)
        print(f"| {path.parent.name} | {path.stem} | {shapes} | {ms:.2f} |", flush=True)
    print(f"\n{len(files)} problems, sum of medians {total:.1f} ms" + (f"; over 200 ms: {', '.join(slow)}" if slow else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
