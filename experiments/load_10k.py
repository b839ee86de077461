"""Load: a whole campaign of many candidates through the real loop, journal and checkpoint, on simulated devices.

The campaign is real (``search.campaign.Campaign``: proposers, steady-state feed, in-process scheduler adapter,
Parquet journal, a checkpoint after every result). What is simulated is the evaluation: ``cheap`` answers at once
with a status and a time drawn from the candidate's hash (about 80% accepted), and the devices are ``--devices``
in-process devices of class ``cpu`` with ``--slots`` verify slots each. Candidates come from the ``files`` proposer,
``--evaluations`` distinct files over ``--problems`` problems.

It records the driver's resident memory as the campaign grows, its peak (``ru_maxrss``) and time, and then, on the
finished population, the time of the queries a live campaign and ``kswarm status`` make: open (read the journal),
status counts, best per island, one island's parents and failures (``IslandView``), and ``campaign_status``. It
checks that nothing was lost: every candidate file is in the journal exactly once with a final status, and the
checkpoint has nothing in flight. Run from the repository root:

    .venv/bin/python experiments/load_10k.py --evaluations 10000 --out tmp/load-10k

It prints a markdown report (and writes it with ``--report FILE``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evaluators.policy import EvalRequest  # noqa: E402
from evaluators.result import EvalResult, Status, TimeStats  # noqa: E402
from search.campaign import Campaign  # noqa: E402
from search.checkpoint import load_checkpoint  # noqa: E402
from search.config import load_config  # noqa: E402
from search.local_dispatch import LocalDispatcher  # noqa: E402

PROBLEM = REPO / "experiments" / "problems" / "level1" / "leaky_relu.py"
_REJECTED = (Status.MISMATCH, Status.COMPILE_ERROR, Status.RUNTIME_ERROR, Status.TIMEOUT)


def cheap(req: EvalRequest, *, timing_slot=None) -> EvalResult:
    """A verdict and a time that depend only on the candidate's source; no sandbox, no torch."""
    h = int(hashlib.sha256(req.candidate_source.encode()).hexdigest()[:8], 16)
    if h % 5 == 0:
        return EvalResult(status=_REJECTED[h % len(_REJECTED)], reason="simulated rejection", device=req.device)
    ms = 0.5 + (h % 10_000) / 10_000
    return EvalResult(status=Status.ACCEPTED, reason="simulated", device=req.device,
                      candidate=TimeStats(ms, ms * 0.98, ms * 1.02, 20, ms * 0.97, ms * 1.05),
                      eager=TimeStats(1.0, 0.99, 1.01, 20, 0.98, 1.02), speedup=1.0 / ms,
                      speedup_ci=(0.98 / ms, 1.02 / ms))


def make_campaign(root: Path, evaluations: int, problems: int) -> Path:
    """A campaign folder under ``root``: ``problems`` copies of one small problem and ``evaluations`` distinct
    candidate files spread over them."""
    if root.exists():
        shutil.rmtree(root)
    (root / "problems").mkdir(parents=True)
    (root / "cands").mkdir()
    body = PROBLEM.read_text()
    names = [f"p{i:03d}" for i in range(problems)]
    for name in names:
        (root / "problems" / f"{name}.py").write_text(body)
    for i in range(evaluations):
        name = names[i % problems]
        (root / "cands" / f"{name}__{i:06d}.py").write_text(
            f"import torch\n\n\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n"
            f"        return torch.nn.functional.leaky_relu(x, {0.01 + i * 1e-9!r})   # variant {i}\n")
    (root / "c.toml").write_text(
        f'[campaign]\nname = "load"\nout = "run"\n[budget]\nmax_evaluations = {evaluations}\nmax_minutes = 600\n'
        '[[problems]]\npath = "problems/*.py"\n[[targets]]\nhardware = "cpu"\n'
        '[[proposers]]\nkind = "files"\ndir = "cands"\nper_generation = 64\n')
    return root / "c.toml"


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def run_load(root: Path, evaluations: int, problems: int, devices: int, slots: int, every: int) -> dict:
    """Run the campaign; returns the memory samples, time and the lost/duplicated counts."""
    from search.snapshot import write_snapshot
    cfg = load_config(make_campaign(root, evaluations, problems))
    write_snapshot(cfg)
    out = root / "run"
    samples: list[tuple[int, float, float]] = []         # (evaluations done, RSS MB, seconds)
    start = time.monotonic()
    rss0 = rss_mb()

    def watch(p) -> None:
        if p.done and (p.done % every == 0 or p.done == evaluations) and (not samples or samples[-1][0] != p.done):
            samples.append((p.done, rss_mb(), time.monotonic() - start))

    Campaign(cfg, out, local=True, on_progress=watch,
             dispatcher_factory=lambda cfg: LocalDispatcher({"cpu": devices}, cheap, slots=slots)).run()
    wall = time.monotonic() - start
    return {"out": out, "wall_s": wall, "rss0_mb": rss0, "samples": samples,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **audit(root, out)}


def audit(root: Path, out: Path) -> dict:
    """Every candidate file proposed is in the journal exactly once, with a final status; nothing is in flight."""
    import pyarrow.parquet as pq
    keys, statuses, ids = [], [], set()
    for part in sorted((out / "population").glob("*.parquet")):
        t = pq.read_table(part, columns=["eval_key", "status", "params"])
        keys += t.column("eval_key").to_pylist()
        statuses += t.column("status").to_pylist()
        ids |= {json.loads(p)["file"] for p in t.column("params").to_pylist()}
    files = {p.name for p in (root / "cands").glob("*.py")}
    final = {s.value for s in Status}
    ck = load_checkpoint(out)
    return {"rows": len(keys), "duplicates": len(keys) - len(set(keys)), "lost": len(files - ids),
            "not_final": sum(1 for s in statuses if s not in final), "in_flight": len(ck.in_flight) if ck else -1,
            "parts": len(list((out / "population").glob("*.parquet")))}


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def query_times(out: Path, repeats: int = 5) -> dict[str, list[float]]:
    """Milliseconds per query on the finished population, ``repeats`` times each."""
    from search.feed import default_cores
    from search.island_view import IslandView
    from search.population import Population
    from search.status import campaign_status
    pop = Population.open(out)
    problem_id, hw = pop.islands()[0]
    path = str(out.parent / "problems" / f"{problem_id}.py")

    def island() -> None:
        view = IslandView(pop, path, hw, cache_dir=None, cores=default_cores(), hardwares=(hw,))
        view.best(5)
        view.failures(20)

    return {"open (read the journal)": _timed(lambda: Population.open(out), max(1, repeats // 2)),
            "status counts": _timed(pop.status_counts, repeats),
            "best per island": _timed(pop.best, repeats),
            "one island: parents and failures": _timed(island, repeats),
            "one island: Pareto front": _timed(lambda: pop.front(problem_id, hw), repeats),
            "kswarm status (campaign_status)": _timed(lambda: campaign_status(out), max(1, repeats // 2))}


def _fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):,.2f} | {min(xs):,.2f} | {max(xs):,.2f}"


def report(args: argparse.Namespace, res: dict, queries: dict[str, list[float]]) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    lines = [f"Command: `.venv/bin/python experiments/load_10k.py --evaluations {args.evaluations} --problems "
             f"{args.problems} --devices {args.devices} --slots {args.slots}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"load average {os.getloadavg()[0]:.1f}; commit {commit}.", "",
             f"- evaluations recorded: {res['rows']:,} in {res['parts']:,} journal parts; duplicates "
             f"{res['duplicates']}, candidates lost {res['lost']}, rows without a final status {res['not_final']}, "
             f"left in flight {res['in_flight']}",
             f"- wall time: {res['wall_s']:,.1f} s ({res['rows'] / res['wall_s']:,.1f} evaluations/s)",
             f"- driver RSS: {res['rss0_mb']:,.0f} MB before the campaign, peak {res['peak_rss_mb']:,.0f} MB "
             f"(ru_maxrss)", "", "| evaluations done | RSS MB | seconds |", "|---|---|---|"]
    lines += [f"| {n:,} | {m:,.0f} | {s:,.1f} |" for n, m, s in res["samples"]]
    lines += ["", "| query at the final size | median ms | min | max |", "|---|---|---|---|"]
    lines += [f"| {name} | {_fmt(xs)} |" for name, xs in queries.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evaluations", type=int, default=10_000)
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--devices", type=int, default=16)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--every", type=int, default=1000, help="sample the RSS every N evaluations")
    ap.add_argument("--out", type=Path, default=REPO / "tmp" / "load-10k")
    ap.add_argument("--report", type=Path)
    args = ap.parse_args()
    quiet = logging.StreamHandler()
    quiet.setLevel(logging.WARNING)      # the campaign logs every result at INFO into its own log file
    logging.basicConfig(handlers=[quiet])
    res = run_load(args.out, args.evaluations, args.problems, args.devices, args.slots, args.every)
    text = report(args, res, query_times(res["out"]))
    sys.stdout.write(text)
    if args.report:
        args.report.write_text(text)
    if res["lost"] or res["duplicates"] or res["not_final"] or res["in_flight"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
