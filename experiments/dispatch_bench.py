"""Dispatch scale benchmark: the Dispatcher over many simulated nodes on one machine.

Each simulated node is a real Ray node (``ray.cluster_utils.Cluster``) with no CPUs and one unit of ``hw:sim``,
so one evaluator actor per node. The cluster grows 1, 2, 4, 8, 16 nodes; at each size:

- a null evaluator: evaluations per second and the time an actor is held per evaluation (the dispatch overhead);
- a sleeping evaluator: throughput against the ideal N / sleep.

Run from the repository root:

    RAY_AUTH_MODE=disabled .venv/bin/python experiments/dispatch_bench.py --nodes 1,2,4,8,16 --repeats 3

It prints a markdown table (mean and min-max over the repeats).
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from cluster.dispatch import Dispatcher  # noqa: E402
from evaluators.policy import EvalRequest  # noqa: E402
from evaluators.result import EvalResult, Status  # noqa: E402

log = logging.getLogger("dispatch_bench")
STORE_BYTES = 80 * 2**20


def worker_pythonpath() -> str:
    """The repository ahead of this process's PYTHONPATH (which may hold Ray itself, on a host without it)."""
    return os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))


def null_evaluate(req: EvalRequest) -> EvalResult:
    return EvalResult(status=Status.ACCEPTED, reason="null")


def sleep_evaluate(req: EvalRequest) -> EvalResult:
    time.sleep(float(req.scale))
    return EvalResult(status=Status.ACCEPTED, reason="slept")


def run_batch(d: Dispatcher, n: int, sleep_s: float | None, tag: str) -> tuple[float, float]:
    """Submit ``n`` evaluations at once; the seconds until the last result, and the driver's CPU seconds."""
    scale = "0" if sleep_s is None else repr(sleep_s)
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(n):
        d.submit(f"{tag}-{i}", EvalRequest(problem_path="p.py", candidate_source=str(i), scale=scale), "sim")
    done = 0
    while done < n:
        done += len(d.poll(timeout=5.0))
    return time.perf_counter() - start, time.process_time() - cpu


def measure(nodes: int, repeats: int, null_n: int, sleep_s: float, sleep_per_worker: int,
            in_flight: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"null_rate": [], "null_hold_ms": [], "driver_cpu_ms": [], "sleep_rate": [],
                                   "sleep_eff": []}
    for evaluate, key in ((null_evaluate, "null"), (sleep_evaluate, "sleep")):
        d = Dispatcher(["sim"], evaluate, max_in_flight_per_actor=in_flight, rescan_s=5.0)
        try:
            assert d.capacity() == {"sim": nodes}, d.capacity()
            run_batch(d, 4 * nodes, None, f"warm-{key}")        # every actor started and warm
            for r in range(repeats):
                if key == "null":
                    wall, cpu = run_batch(d, null_n, None, f"null-{r}")
                    out["null_rate"].append(null_n / wall)
                    out["driver_cpu_ms"].append(1e3 * cpu / null_n)
                    out["null_hold_ms"].append(1e3 * wall * nodes / null_n)
                else:
                    n = sleep_per_worker * nodes
                    wall, _ = run_batch(d, n, sleep_s, f"sleep-{r}")
                    out["sleep_rate"].append(n / wall)
                    out["sleep_eff"].append((n / wall) / (nodes / sleep_s))
        finally:
            d.shutdown()
    return out


PINNED_CASES = (
    # (key, problem, candidate, scale); every case runs on every detected class
    ("merged-linears", "experiments/problems/level2/stacked_linears.py",
     "experiments/candidates/stacked_linears_merged.py", "large"),
    ("softmax-manual", "tests/fixtures/problems/row_softmax.py",
     "tests/fixtures/candidates/honest/stable_softmax_manual.py", "default"),
    ("os-exit", "tests/fixtures/problems/relu.py", "tests/fixtures/candidates/adversarial/c12_os_exit.py", "default"),
    ("sys-modules", "tests/fixtures/problems/relu.py",
     "tests/fixtures/candidates/adversarial/c09_sys_modules.py", "default"),
)


def pinned_run(temp_dir: str, num_cpus: int) -> int:
    """The real evaluator pipeline on a local Ray with this machine's detected hardware, every class a target."""
    from cluster import hardware
    from cluster.runtime import cluster_hardware, ensure_ray

    devices = hardware.detect_devices()
    handle = ensure_ray(None, temp_dir=temp_dir, resources=hardware.hardware_resources(devices),
                        num_gpus=hardware.num_cuda(devices), num_cpus=num_cpus, object_store_memory=STORE_BYTES,
                        runtime_env={"env_vars": {"PYTHONPATH": worker_pythonpath()}})
    try:
        classes = list(dict.fromkeys(d.hw_class for d in devices))
        print(f"detected: {[(d.hw_class, d.name) for d in devices]}; ray hw resources: {cluster_hardware()}")
        d = Dispatcher(classes, "evaluators.pipeline:evaluate", "evaluators.pipeline:precheck", timeout_s=900)
        for key, problem, cand, scale in PINNED_CASES:
            for cls in classes:
                req = EvalRequest(problem_path=str(REPO / problem), candidate_source=(REPO / cand).read_text(),
                                  device=hardware.device_kind(cls), scale=scale if cls != "cpu" else "default")
                d.submit(f"{key}@{cls}", req, cls)
        print("| key | class | status | speedup | candidate ms | eager ms | compile ms | device | node | "
              "pid | Ray GPU ids | reason |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        while d.in_flight():
            for key, cls, r in d.poll(timeout=10):
                c = r.provenance.get("cluster", {})
                ms = r.to_dict()
                print(f"| {key} | {cls} | {r.status.value} | {r.speedup and round(r.speedup, 2)} | "
                      f"{ms['candidate_ms'] and round(ms['candidate_ms'], 4)} | "
                      f"{ms['eager_ms'] and round(ms['eager_ms'], 4)} | "
                      f"{ms['compile_ms'] and round(ms['compile_ms'], 4)} "
                      f"| {c.get('device_name', r.device_name)} | {str(c.get('node_id', ''))[:8]} | {c.get('pid')} | "
                      f"{c.get('gpu_ids')} | {r.reason[:70]} |", flush=True)
        fps = {k: v for k, v in c.items() if k not in ("actor_id", "pid")}
        print(f"fingerprint of the last evaluator: {fps}")
        d.shutdown()
    finally:
        handle.shutdown()
    return 0


def fmt(xs: list[float], digits: int = 1) -> str:
    return f"{statistics.mean(xs):.{digits}f} ({min(xs):.{digits}f}-{max(xs):.{digits}f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="1,2,4,8,16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--null-evals", type=int, default=1000)
    ap.add_argument("--sleep-s", type=float, default=0.2)
    ap.add_argument("--sleep-evals-per-worker", type=int, default=10)
    ap.add_argument("--in-flight", type=int, default=1, help="evaluations one actor runs at once (its verify slots)")
    ap.add_argument("--temp-dir", default=str(REPO / "tmp" / "ray"))
    ap.add_argument("--pinned", action="store_true",
                    help="instead: run the real pipeline on a few fixtures on every detected hardware class")
    ap.add_argument("--num-cpus", type=int, default=4, help="CPUs of the local Ray for --pinned")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.pinned:
        os.makedirs(args.temp_dir, exist_ok=True)
        return pinned_run(args.temp_dir, args.num_cpus)
    sizes = sorted(int(x) for x in args.nodes.split(","))

    os.makedirs(args.temp_dir, exist_ok=True)
    os.environ["RAY_TMPDIR"] = str(Path(args.temp_dir).parent)   # Cluster() writes its address file there
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": STORE_BYTES, "temp_dir": args.temp_dir, "include_dashboard": False})
    rows = []
    try:
        ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": worker_pythonpath()}},
                 logging_level="WARNING")
        added = 0
        for size in sizes:
            t0 = time.perf_counter()
            while added < size:
                cluster.add_node(num_cpus=0, resources={"hw:sim": 1}, object_store_memory=STORE_BYTES,
                                 temp_dir=args.temp_dir)
                added += 1
            log.info("%d simulated nodes up (%.1f s to add)", added, time.perf_counter() - t0)
            m = measure(size, args.repeats, args.null_evals, args.sleep_s, args.sleep_evals_per_worker,
                        args.in_flight)
            rows.append((size, m))
            log.info("N=%d null %s/s hold %s ms; sleep %s/s eff %s", size, fmt(m["null_rate"]),
                     fmt(m["null_hold_ms"], 2), fmt(m["sleep_rate"], 2), fmt(m["sleep_eff"], 3))
    finally:
        ray.shutdown()
        cluster.shutdown()

    print(f"machine: {platform.machine()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
          f"Ray {ray.__version__}; max_in_flight_per_actor={args.in_flight}; {args.repeats} repeats, "
          "mean (min-max)\n")
    print(f"| nodes N | null evals/s | actor held per null eval (ms) | driver CPU per null eval (ms) "
          f"| sleep {args.sleep_s:g} s: evals/s | ideal N/{args.sleep_s:g} | efficiency |")
    print("|---|---|---|---|---|---|---|")
    for size, m in rows:
        print(f"| {size} | {fmt(m['null_rate'])} | {fmt(m['null_hold_ms'], 2)} | {fmt(m['driver_cpu_ms'], 3)} "
              f"| {fmt(m['sleep_rate'], 2)} "
              f"| {size / args.sleep_s:.1f} | {fmt(m['sleep_eff'], 3)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
