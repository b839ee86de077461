"""The chaos harness behind ``experiments/chaos.py``: the cluster, the driver process, the faults and the proofs."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
PROBLEM = REPO / "experiments" / "problems" / "level1" / "softmax.py"
STORE = 80 * 2**20
KINDS = ("driver", "optuna", "actor", "node", "checkpoint", "part")


def make_campaign(root: Path, evaluations: int, files: int) -> Path:
    (root / "problems").mkdir(parents=True)
    (root / "cands").mkdir()
    shutil.copy(PROBLEM, root / "problems" / "softmax.py")
    for i in range(files):
        (root / "cands" / f"softmax__{i:03d}.py").write_text(
            "import torch\n\n\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n"
            f"        return torch.softmax(x, dim=-1)   # variant {i}\n")
    toml = root / "c.toml"
    toml.write_text(f'[campaign]\nname = "chaos"\nout = "run"\nseed = 5\n[budget]\nmax_evaluations = {evaluations}\n'
                    'max_minutes = 60\n[[problems]]\npath = "problems/softmax.py"\n[[targets]]\nhardware = "cpu"\n'
                    '[[proposers]]\nkind = "files"\ndir = "cands"\nper_generation = 2\n'
                    '[[proposers]]\nkind = "optuna"\nper_generation = 2\n')
    return toml


def drive(root: str, address: str) -> None:
    """The driver process: run (or resume) the campaign under ``root`` on the cluster at ``address``."""
    from cluster.dispatch import Dispatcher
    from search.campaign import Campaign
    from search.config import load_config
    from search.snapshot import write_snapshot
    cfg = load_config(Path(root) / "c.toml")
    out = Path(root) / "run"
    if not (out / "campaign.json").exists():
        write_snapshot(cfg)
    progress = Campaign(cfg, out, address=address, dispatcher_factory=lambda cfg: Dispatcher(
        ["cpu"], "experiments.chaos:evaluate", timeout_s=60, retries=4, rescan_s=0.5, wait_s=60)).run()
    (Path(root) / "ended.json").write_text(json.dumps({"done": progress.done, "note": progress.note}))


def optuna_running(out: Path) -> int:
    """Trials RUNNING in every study of the campaign."""
    import optuna
    from optuna.trial import TrialState
    n = 0
    for journal in sorted((out / "studies").glob("*.journal")):
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
            study = optuna.load_study(study_name=s.study_name, storage=storage)
            n += len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return n


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


class Chaos:
    def __init__(self, root: str | None, evaluations: int, rng, faults: int, max_seconds: float,
                 gap: tuple[float, float]):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="chaos-", dir=REPO / "tmp"))
        self.out = self.root / "run"
        self.evaluations, self.rng, self.faults, self.max_seconds, self.gap = evaluations, rng, faults, max_seconds, gap
        self.log: list[dict] = []
        self.driver: subprocess.Popen | None = None
        self.starts = 0
        self.damaged_keys: set[str] = set()

    # --- the cluster and the driver ---------------------------------------------------------------------------

    def _cluster(self):
        from ray.cluster_utils import Cluster

        from cluster.tempdirs import short_temp_dir
        self.ray_tmp = Path(short_temp_dir(str(self.root), prefix="ksw-chaos")) / "ray"
        self.ray_tmp.mkdir(parents=True, exist_ok=True)
        os.environ["RAY_TMPDIR"] = str(self.ray_tmp.parent)
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]]
                                                                  if os.environ.get("PYTHONPATH") else []))
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "object_store_memory": STORE, "temp_dir": str(self.ray_tmp), "include_dashboard": False})
        self.workers = [self._add_worker(cluster) for _ in range(2)]
        return cluster

    def _add_worker(self, cluster):
        return cluster.add_node(num_cpus=1, resources={"hw:cpu": 1}, object_store_memory=STORE,
                                temp_dir=str(self.ray_tmp))

    def _start_driver(self) -> None:
        self.starts += 1
        logf = open(self.root / f"driver-{self.starts:02d}.log", "wb")
        self.driver = subprocess.Popen([sys.executable, "-m", "experiments.chaos", "drive", str(self.root),
                                        self.address], cwd=REPO, env=os.environ.copy(), stdout=logf, stderr=logf,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()

    def _kill_driver(self) -> None:
        if self.driver is not None and self.driver.poll() is None:
            os.killpg(self.driver.pid, signal.SIGKILL)
        if self.driver is not None:
            self.driver.wait(timeout=60)

    def _rows(self) -> int:
        import pyarrow.parquet as pq
        n = 0
        for p in (self.out / "population").glob("*.parquet"):
            try:
                n += pq.ParquetFile(p).metadata.num_rows
            except Exception:  # a part being replaced or damaged: counted when it is whole
                pass
        return n

    # --- faults -----------------------------------------------------------------------------------------------

    def _inject(self, kind: str) -> dict:
        rec = {"kind": kind, "rows_before": self._rows(), "at_s": round(time.monotonic() - self.t0, 1)}
        if kind == "actor":
            pids = [p.pid for p in psutil.process_iter(["cmdline"])
                    if any("ray::EvaluatorActor" in c for c in (p.info["cmdline"] or []))]
            if not pids:
                rec["skipped"] = "no evaluator actor process yet"
                return rec
            pid = self.rng.choice(pids)
            os.kill(pid, signal.SIGKILL)
            rec["pid"] = pid
        elif kind == "node":
            victim = self.workers.pop(self.rng.randrange(len(self.workers)))
            self.cluster.remove_node(victim, allow_graceful=False)
            self.workers.append(self._add_worker(self.cluster))
            rec["node"] = victim.node_id[:8]
        else:
            if kind == "optuna":
                end = time.monotonic() + 15
                while (running := optuna_running(self.out)) == 0 and time.monotonic() < end:
                    time.sleep(0.1)
                rec["optuna_running_at_kill"] = running
            self._kill_driver()
            if kind == "optuna":
                rec["optuna_running_after_kill"] = optuna_running(self.out)
            if kind == "checkpoint" and (self.out / "checkpoint.json").exists():
                truncate(self.out / "checkpoint.json")
                rec["damaged"] = "checkpoint.json"
            if kind == "part":
                import pyarrow.parquet as pq
                parts = sorted((self.out / "population").glob("part-*.parquet"))
                if parts:
                    self.damaged_keys |= set(pq.read_table(parts[-1], columns=["eval_key"])
                                             .column("eval_key").to_pylist())
                    truncate(parts[-1])
                    rec["damaged"] = parts[-1].name
            self._start_driver()
        return rec

    def _wait_for_progress(self, rows: int, deadline: float) -> None:
        """Until the journal grows past ``rows`` (so each fault hits a campaign that is running), then a random gap."""
        while self._rows() <= rows and time.monotonic() < deadline and self.driver.poll() is None:
            time.sleep(0.2)
        end = time.monotonic() + self.rng.uniform(*self.gap)
        while time.monotonic() < min(end, deadline) and self.driver.poll() is None:
            time.sleep(0.1)

    # --- the run ----------------------------------------------------------------------------------------------

    def run(self) -> dict:
        make_campaign(self.root, self.evaluations, files=self.evaluations)
        self.t0 = time.monotonic()
        deadline = self.t0 + self.max_seconds
        self.cluster = self._cluster()
        self.address = self.cluster.address
        try:
            self._start_driver()
            order = [k for _ in range(self.faults // len(KINDS) + 1) for k in self.rng.sample(KINDS, len(KINDS))]
            rows = 0
            for kind in order[:self.faults]:
                self._wait_for_progress(rows, deadline)
                if self.driver.poll() is not None or time.monotonic() >= deadline:
                    break
                rec = self._inject(kind)
                rows = self._rows()
                self.log.append(rec)
            # the faults are over: the last driver gets as long again to finish (a killed driver's stale Optuna
            # lock alone costs it 30 s)
            while self.driver.poll() is None and time.monotonic() < deadline + max(120.0, self.max_seconds):
                time.sleep(0.5)
            if self.driver.poll() is None:
                self._kill_driver()
            final_rc = self.driver.returncode
        finally:
            self._kill_driver()
            self.cluster.shutdown()
        return self._proofs(final_rc)

    def _proofs(self, final_rc: int) -> dict:
        import pyarrow.parquet as pq

        from evaluators.result import Status
        from search.checkpoint import load_checkpoint
        keys, statuses, cids = [], [], set()
        for part in sorted((self.out / "population").glob("part-*.parquet")):
            t = pq.read_table(part, columns=["eval_key", "status", "candidate_id"])
            keys += t.column("eval_key").to_pylist()
            statuses += t.column("status").to_pylist()
            cids |= set(t.column("candidate_id").to_pylist())
        ck = load_checkpoint(self.out)
        proposed = {cid for name, state in ck.proposer_states.items() for cid in state.get("proposed", ())}
        not_started = set()
        path = self.out / "logs" / "not_started.jsonl"
        if path.exists():
            not_started = {json.loads(line)["candidate_id"] for line in path.read_text().splitlines()}
        damaged = {k.split("/", 1)[1].rsplit("@", 1)[0] for k in self.damaged_keys}
        log = (self.out / "logs" / "campaign.log").read_text()
        injected = [r for r in self.log if "skipped" not in r]
        missing = proposed - cids - not_started - damaged
        reported = {"checkpoint": log.count("damaged checkpoint"), "part": log.count("damaged population part")}
        summary = {
            "faults_injected": len(injected),
            "by_kind": {k: sum(1 for r in injected if r["kind"] == k) for k in KINDS},
            "faults_skipped": len(self.log) - len(injected),
            "driver_starts": self.starts,
            "optuna_trials_running_at_kills": sum(r.get("optuna_running_at_kill", 0) for r in injected),
            "final_driver_exit": final_rc,
            "evaluations": len(keys), "duplicates": len(keys) - len(set(keys)),
            "not_final": sum(1 for s in statuses if s not in {x.value for x in Status}),
            "proposed": len(proposed), "lost": len(missing), "not_started": len(not_started),
            "in_damaged_parts": len(damaged - cids), "left_in_flight": len(ck.in_flight),
            "optuna_running_at_end": optuna_running(self.out),
            "damage_reported": reported,
            "seconds": round(time.monotonic() - self.t0, 1), "dir": str(self.root),
            # a driver killed while it held the Optuna journal's lock: the next one waits Optuna's 30 s grace
            "optuna_stale_lock_releases": sum(p.read_text(errors="replace").count("Forcibly releasing the lock")
                                              for p in self.root.glob("driver-*.log")),
            "ended": json.loads((self.root / "ended.json").read_text())["note"] if final_rc == 0 else "",
        }
        damage_ok = all(reported[k] >= sum(1 for r in injected if r["kind"] == k and r.get("damaged"))
                        for k in reported)
        # survived: the campaign resumed after every fault and ran to its end (the last driver exits 0 only when
        # nothing is left in flight: the budget reached or the proposers exhausted)
        summary["faults_survived"] = len(injected) if final_rc == 0 else 0
        summary["proofs_hold"] = bool(final_rc == 0 and not missing and summary["duplicates"] == 0
                                      and summary["not_final"] == 0 and not ck.in_flight and damage_ok
                                      and summary["optuna_running_at_end"] == 0
                                      and summary["faults_survived"] == len(injected))
        return summary
