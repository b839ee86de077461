"""Compare the project's CUDA timer with triton.testing.do_bench on four kernels.

Run on a CUDA machine from the repository root:

    PYTHONPATH=. python experiments/gpu/cuda_timer_check.py

Prints a Markdown table and, when $OUT is set, writes it to $OUT/cuda_timer_check.md.

What to expect: on the three large kernels the two medians agree to a few percent. Our timer synchronizes the whole
device before its end event and starts from an idle device, so each sample also carries a synchronize's latency
and the host's launch cost; do_bench queues its calls back to back and hides both. On the 1024-element add those
costs are the whole measurement, so the ratio there is large: that is launch overhead, and the reason the harness
warns about baselines shorter than a few microseconds.
"""
from __future__ import annotations

import os
import statistics
import sys
from typing import Callable

import torch
import triton
import triton.testing

from evaluators.policy import TimingPolicy
from evaluators.stats import sample_until, summarize
from evaluators.timers import get_timer

REPEATS = 3
WARMUP_CALLS = 5
POLICY = TimingPolicy(min_samples=20, max_samples=2000, ci_target=0.01, time_cap_s=5.0, flush_cache=True)


def make_kernels(device: torch.device) -> list[tuple[str, Callable[[], object]]]:
    """(name, zero-argument callable) for each kernel; inputs are allocated once, outside the timed calls."""
    copy_elems = 256 * 1024 * 1024 // 4           # 256 MB of float32
    copy_src = torch.randn(copy_elems, device=device)
    copy_dst = torch.empty_like(copy_src)

    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    c = torch.empty(n, n, device=device, dtype=torch.bfloat16)

    logits = torch.randn(16384, 16384, device=device, dtype=torch.float32)

    x_small = torch.randn(1024, device=device)
    y_small = torch.randn(1024, device=device)

    return [
        ("copy 256 MB (fp32)", lambda: copy_dst.copy_(copy_src)),
        ("matmul 8192^3 (bf16)", lambda: torch.matmul(a, b, out=c)),
        ("softmax 16384x16384 (fp32)", lambda: torch.softmax(logits, dim=-1)),
        ("add 1024 elements (fp32)", lambda: torch.add(x_small, y_small)),
    ]


def ours_median_ms(fn: Callable[[], object], device: torch.device) -> tuple[float, float, int]:
    """Median ms of our timer with L2 flush, the median host/event ratio, and the sample count."""
    timer = get_timer("cuda", device)
    for _ in range(WARMUP_CALLS):
        timer(fn, flush=True)
    host_over_event: list[float] = []

    def run_once() -> int:
        ns = timer(fn, flush=True)
        host_over_event.append(timer.last_host_ns / ns if ns > 0 else float("inf"))
        return ns

    samples = sample_until(run_once, POLICY)
    return summarize(samples).median_ms, statistics.median(host_over_event), len(samples)


def do_bench_median_ms(fn: Callable[[], object]) -> float:
    return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))


def spread(values: list[float]) -> str:
    return f"{min(values):.4g} – {max(values):.4g}"


def main() -> int:
    if not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 1
    device = torch.device("cuda", torch.cuda.current_device())
    props = torch.cuda.get_device_properties(device)
    rows = []
    for name, fn in make_kernels(device):
        ours, theirs, ratios, counts = [], [], [], []
        for _ in range(REPEATS):
            median, host_ratio, count = ours_median_ms(fn, device)
            ours.append(median)
            ratios.append(host_ratio)
            counts.append(count)
            theirs.append(do_bench_median_ms(fn))
        ours_med, theirs_med = statistics.median(ours), statistics.median(theirs)
        rows.append(
            f"| {name} | {ours_med:.4g} | {spread(ours)} | {theirs_med:.4g} | {spread(theirs)} "
            f"| {ours_med / theirs_med:.3f} | {statistics.median(ratios):.3f} | {min(counts)}–{max(counts)} |"
        )
        print(f"done: {name}", file=sys.stderr, flush=True)
        torch.cuda.empty_cache()

    lines = [
        "# CUDA timer check: evaluators.timers vs triton.testing.do_bench",
        "",
        f"- device: {props.name}, L2 {props.L2_cache_size / 2**20:.0f} MiB, "
        f"flush buffer {4 * props.L2_cache_size / 2**20:.0f} MiB",
        f"- torch {torch.__version__}, triton {triton.__version__}",
        f"- ours: median of `sample_until` samples (min {POLICY.min_samples}, max {POLICY.max_samples}, "
        f"CI target ±{POLICY.ci_target:.0%}, cap {POLICY.time_cap_s:.0f} s), L2 flushed before each call",
        "- do_bench: `do_bench(fn, warmup=25, rep=100, return_mode=\"median\")`",
        f"- each cell is the median over {REPEATS} repeats; spread is min – max of the {REPEATS} repeat medians",
        "- host/event: median over samples of the host clock (start to final sync) over the event time; "
        "it must be >= 1",
        "",
        "| kernel | ours (ms) | ours spread (ms) | do_bench (ms) | do_bench spread (ms) | ours / do_bench "
        "| host / event | samples |",
        "| --- | ---: | --- | ---: | --- | ---: | ---: | --- |",
        *rows,
        "",
    ]
    table = "\n".join(lines)
    print(table)
    out_dir = os.environ.get("OUT")
    if out_dir:
        path = os.path.join(out_dir, "cuda_timer_check.md")
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(table)
        os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
