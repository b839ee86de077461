"""A thread of the candidate still running its code when forward returns is deferred work, whether or not it has
changed the output yet; threads joined before returning, and a pool's idle workers, are not. Static checks are set
to warn, so that the runtime checks decide."""
from __future__ import annotations

from pathlib import Path

import pytest

from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, VerifyPolicy
from evaluators.result import Status

PROBLEM = """\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return torch.relu(x)


def get_inputs():
    return [torch.randn(64, 256)]


def get_init_inputs():
    return []
"""

JOINED = """\
import threading
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        out = torch.empty_like(x)
        half = x.shape[0] // 2
        parts = [(x[:half], out[:half]), (x[half:], out[half:])]
        workers = [threading.Thread(target=torch.clamp, args=(a,), kwargs={"min": 0.0, "out": o}) for a, o in parts]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return out
"""

POOL = """\
from concurrent.futures import ThreadPoolExecutor
import torch
import torch.nn as nn


def _half(a, o):
    torch.clamp(a, min=0.0, out=o)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = ThreadPoolExecutor(max_workers=2)

    def forward(self, x):
        out = torch.empty_like(x)
        half = x.shape[0] // 2
        futures = [self.pool.submit(_half, x[:half], out[:half]), self.pool.submit(_half, x[half:], out[half:])]
        for f in futures:
            f.result()
        return out
"""

# the output is complete before forward returns; the thread's later work writes nothing anyone reads
LINGERING = """\
import threading
import time
import torch
import torch.nn as nn


def _linger(x, out):
    time.sleep(0.05)
    torch.relu(x)


class ModelNew(nn.Module):
    def forward(self, x):
        out = torch.relu(x)
        threading.Thread(target=_linger, args=(x, out), daemon=True).start()
        return out
"""


@pytest.fixture(scope="module")
def problem(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("threads-problem") / "relu.py"
    path.write_text(PROBLEM)
    return path


def run(problem: Path, source: str, cache_dir: Path):
    return evaluate(EvalRequest(problem_path=str(problem), candidate_source=source, device="cpu", mode="verify",
                                verify=VerifyPolicy(static="warn", seed=5), cache_dir=str(cache_dir)))


@pytest.mark.parametrize("source", [JOINED, POOL], ids=["joined-threads", "thread-pool"])
def test_work_finished_on_threads_before_returning_is_accepted(problem, kswarm_cache_dir, source):
    result = run(problem, source, kswarm_cache_dir)
    assert result.status is Status.ACCEPTED, result.reason


def test_a_thread_still_in_candidate_code_after_returning_is_deferred_work(problem, kswarm_cache_dir):
    """Caught at the first call's return, or by the audit after the warm-up calls, whichever comes first."""
    result = run(problem, LINGERING, kswarm_cache_dir)
    assert result.status is Status.DEFERRED_WORK, result.reason
    assert "running its" in result.reason and "thread(s)" in result.reason


def test_the_outputs_reply_names_candidate_threads_alive_at_return(tmp_path):
    import threading

    import torch

    from evaluators import child, integrity
    from evaluators import inputs as inp

    cand = tmp_path / "candidate.py"
    cand.write_text("def work(stop, entered):\n    entered.set()\n    stop.wait()\n")
    ns: dict = {}
    exec(compile(cand.read_text(), str(cand), "exec"), ns)
    state = {"candidate_path": str(cand), "threads_before": integrity.python_threads(), "device": "cpu"}

    def collect():
        kind, reply = child._collect(state, torch.ones(4), [torch.zeros(4)], torch=torch, inp=inp,
                                     integrity=integrity)
        assert kind == "outputs" and not reply["deferred"]
        return reply["threads_running"]

    stop, entered = threading.Event(), threading.Event()
    worker = threading.Thread(target=ns["work"], args=(stop, entered), name="cand-worker")
    worker.start()
    entered.wait()
    try:
        assert [n.split(":")[0] for n in collect()] == ["cand-worker"]
    finally:
        stop.set()
        worker.join()
    assert collect() == []
    # the reference (no candidate file) is not asked
    del state["candidate_path"]
    assert collect() == []
