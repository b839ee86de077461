"""A campaign's evaluations per hour, before and after a change, measured in one run on one machine.

The tree at ``--before`` (a commit; extracted with ``git archive``, the working tree is untouched) and the tree at
``--after`` (a commit extracted the same way; by default the working tree itself, which must then not change while
it runs) run the same campaign file, with the same budget, alternately (before, after, before, after, ...), each in a
fresh campaign directory, so that drift in the machine's load hits both. Each run's rate is its journal's rows over
its checkpoint's elapsed time. Run from the repository root:

    RAY_AUTH_MODE=disabled .venv/bin/python experiments/throughput_before_after.py \\
        --campaign experiments/campaigns/offline_suite_cpu.toml --minutes 5 --rounds 2

It prints a markdown table: per run, the evaluations, minutes and evaluations per hour; then the ratio of the means.

A campaign measures its baselines into the node's cache (``[campaign] cache = "node"``). ``--cache cold`` (the
default) gives every run a fresh one, as on a node that never ran the problems; ``--cache warm`` gives the after
tree one node cache for all its runs, filled first by one campaign that is not counted, as on a node that ran them
before. A tree that predates the node cache measures its baselines in each campaign's own folder either way.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def extract(commit: str, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    blob = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest)
    return dest


def campaign_copy(src: Path, tree: Path, minutes: float, work: Path, label: str) -> Path:
    """The campaign file for ``tree``: its problem paths made absolute inside that tree, the budget's minutes set."""
    rel = src.parent.relative_to(REPO)

    def absolute(m: re.Match) -> str:
        return f'path = "{(tree / rel / m.group(1)).resolve()}"'

    text = re.sub(r'(?m)^path\s*=\s*"([^"]+)"', absolute, src.read_text())
    text = re.sub(r"(?m)^max_minutes\s*=.*$", f"max_minutes = {minutes:g}", text)
    dest = work / f"{label}_{src.name}"
    dest.write_text(text)
    return dest


def run_once(tree: Path, toml: Path, out_dir: Path, limit_s: float, cache: Path) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1",
           "KSWARM_CACHE": str(cache)}
    env.pop("RAY_ADDRESS", None)
    with open(out_dir.parent / f"{out_dir.name}.log", "w") as log:
        # the command line is kswarm.cli; a tree from before it moved has it at search.cli
        cli = "kswarm.cli" if (tree / "kswarm" / "cli.py").is_file() else "search.cli"
        subprocess.run([sys.executable, "-m", cli, "run", str(toml), "--out", str(out_dir)], cwd=tree,
                       env=env, stdout=log, stderr=subprocess.STDOUT, timeout=limit_s, start_new_session=True)
    import pyarrow.parquet as pq
    rows = sum(pq.read_metadata(p).num_rows for p in (out_dir / "population").glob("*.parquet"))
    elapsed = json.loads((out_dir / "checkpoint.json").read_text())["elapsed_s"]
    return rows, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default="8ed11e2", help="the commit to compare with (default: before issue 9)")
    ap.add_argument("--after", default=None,
                    help="a commit to compare (default: the working tree, which then must not change while it runs)")
    ap.add_argument("--campaign", default="experiments/campaigns/offline_suite_cpu.toml")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache", choices=("cold", "warm"), default="cold",
                    help="the node cache of the after tree's runs: a fresh one each (cold) or one filled beforehand")
    ap.add_argument("--work", default=str(REPO / "tmp" / "before_after"))
    args = ap.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    src = (REPO / args.campaign).resolve()
    trees = {"before": extract(args.before, work / "tree_before"),
             "after": REPO if args.after is None else extract(args.after, work / "tree_after")}
    tomls = {k: campaign_copy(src, t, args.minutes, work, k) for k, t in trees.items()}
    head = subprocess.run(["git", "rev-parse", "--short", args.after or "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip() + ("" if args.after else " (working tree)")
    rates: dict[str, list[float]] = {"before": [], "after": []}
    lines = []
    warm = work / "node_cache_warm"
    shutil.rmtree(warm, ignore_errors=True)
    if args.cache == "warm":       # one campaign, not counted, fills the after tree's node cache
        run_once(trees["after"], tomls["after"], work / "after_prime", args.minutes * 60 * 3 + 600, warm)
    for r in range(args.rounds):
        for label in ("before", "after"):
            out = work / f"{label}_{r}"
            shutil.rmtree(out, ignore_errors=True)
            cache = warm if args.cache == "warm" and label == "after" else work / f"{label}_{r}_cache"
            if cache != warm:
                shutil.rmtree(cache, ignore_errors=True)
            rows, elapsed = run_once(trees[label], tomls[label], out, args.minutes * 60 * 3 + 600, cache)
            rates[label].append(rows * 3600 / elapsed)
            lines.append(f"| {label} | {r} | {rows} | {elapsed / 60:.1f} | {rates[label][-1]:.0f} |")
            sys.stderr.write(lines[-1] + "\n")
    load = os.getloadavg()
    sys.stdout.write(f"campaign {args.campaign}, {args.minutes:g} min each; before {args.before}, after {head}; "
                     f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.1f} at the end\n\n")
    sys.stdout.write("| tree | round | evaluations | minutes | evaluations/hour |\n|---|---|---|---|---|\n")
    sys.stdout.write("\n".join(lines) + "\n\n")
    b, a = statistics.mean(rates["before"]), statistics.mean(rates["after"])
    sys.stdout.write(f"mean evaluations/hour: before {b:.0f}, after {a:.0f}; ratio {a / b:.2f}\n")


if __name__ == "__main__":
    main()
