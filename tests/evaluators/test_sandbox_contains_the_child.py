"""Whatever a candidate does to its own process becomes one status; the parent lives on; nothing of the child's
process tree, environment or scratch folder outlives it; the child reaches no secret and no network.

Each case drives the real pipeline (``evaluate``, device cpu, mode verify) with a tiny problem and a candidate
written for the case. Candidates report what they saw by writing JSON to an absolute path formatted into their
source, since their own working directory is deleted with the child.
"""
from __future__ import annotations

import json
import os
import socket
import textwrap
from pathlib import Path

import psutil
import pytest

from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, VerifyPolicy
from evaluators.result import EvalResult, Status

PROBLEM = """\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return x * 2.0


def get_inputs():
    return [torch.randn(8)]


def get_init_inputs():
    return []
"""

SECRET_NAME = "KSWARM_TEST_SECRET_TOKEN"
SECRET_VALUE = "sk-test-4f1c0e7d9b2a-not-a-real-key"


def candidate(forward: str = "return x * 2.0", init: str = "", top: str = "") -> str:
    """A ModelNew with the given bodies; ``top`` runs at import. Bodies are written at zero indentation."""
    return (
        "import json, os, signal, socket, sys, time\n"
        "import torch\n"
        "import torch.nn as nn\n\n"
        + textwrap.dedent(top) + "\n\n"
        "class ModelNew(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        + textwrap.indent(textwrap.dedent(init) or "pass\n", " " * 8) + "\n"
        "    def forward(self, x):\n"
        + textwrap.indent(textwrap.dedent(forward), " " * 8) + "\n"
    )


@pytest.fixture(scope="module")
def problem(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sandbox-problem") / "double.py"
    path.write_text(PROBLEM)
    return path


def run(problem: Path, source: str, cache_dir: Path, **policy) -> EvalResult:
    verify = VerifyPolicy(static="warn", seed=1, **{"timeout_s": 60.0, **policy})
    return evaluate(EvalRequest(problem_path=str(problem), candidate_source=source, device="cpu", mode="verify",
                                verify=verify, cache_dir=str(cache_dir)))


def alive(pid: int) -> bool:
    """A zombie is dead: it waits only to be reaped by whoever adopted it."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_if_alive(pid: int) -> None:
    """Cleanup for a process this test's candidate started and the sandbox failed to kill."""
    if alive(pid):
        os.kill(pid, 9)


def assert_no_child_left() -> None:
    left = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "evaluators.child" in " ".join(p.cmdline()):
                left.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    assert not left, f"sandbox children still running: {left}"


# --- faults become statuses ---------------------------------------------------------------------------------------

def test_hang_becomes_timeout_and_the_whole_tree_is_killed(problem, tmp_path, kswarm_cache_dir):
    pids = tmp_path / "pids.json"
    init = f"""\
        kid = os.fork()
        if kid == 0:
            time.sleep(120)
            os._exit(0)
        with open({str(pids)!r} + ".tmp", "w") as f:
            json.dump({{"child": os.getpid(), "grandchild": kid}}, f)
        os.replace({str(pids)!r} + ".tmp", {str(pids)!r})
        while True:
            time.sleep(0.05)
        """
    result = run(problem, candidate(init=init), kswarm_cache_dir, timeout_s=10.0, extra_writable=(str(tmp_path),))
    assert pids.exists(), "the candidate never ran: the machine is too slow for this timeout"
    seen = json.loads(pids.read_text())
    try:
        assert result.status is Status.TIMEOUT, result.reason
        assert "wall-clock limit of 10 s" in result.reason
        assert not alive(seen["child"]), "the sandboxed child survived"
        assert not alive(seen["grandchild"]), "a process the candidate forked survived"
        assert_no_child_left()
    finally:
        kill_if_alive(seen["grandchild"])


def test_memory_exhaustion_becomes_out_of_memory(problem, kswarm_cache_dir):
    forward = """\
        hoard = []
        for _ in range(24):                       # 6 GB, each chunk written so its pages are resident
            hoard.append(torch.ones(64 << 20))
        return x * 2.0
        """
    result = run(problem, candidate(forward=forward), kswarm_cache_dir, memory_mb=1500)
    assert result.status is Status.OUT_OF_MEMORY, result.reason
    assert "over the limit of 1500 MB" in result.reason
    assert_no_child_left()


@pytest.mark.parametrize("forward,status,words", [
    pytest.param("os._exit(0)\n", Status.EARLY_EXIT, "exited with code 0", id="os._exit"),
    pytest.param("sys.exit(0)\n", Status.EARLY_EXIT, "exited with code 0", id="sys.exit"),
    pytest.param("os.kill(os.getpid(), signal.SIGKILL)\n", Status.CRASHED, "killed by SIGKILL", id="sigkill"),
    pytest.param("raise ValueError('forward exploded on purpose')\n", Status.RUNTIME_ERROR,
                 "ValueError: forward exploded on purpose", id="forward_raises"),
])
def test_forward_fault_becomes_its_status(problem, kswarm_cache_dir, forward, status, words):
    result = run(problem, candidate(forward=forward), kswarm_cache_dir)
    assert result.status is status, result.reason
    assert words in result.reason
    assert_no_child_left()


def test_constructor_that_raises_becomes_compile_error(problem, kswarm_cache_dir):
    result = run(problem, candidate(init="raise RuntimeError('cannot build this one')\n"), kswarm_cache_dir)
    assert result.status is Status.COMPILE_ERROR, result.reason
    assert "RuntimeError: cannot build this one" in result.reason
    assert_no_child_left()


def test_forged_frame_on_the_parents_pipe_is_rejected_not_raised(problem, kswarm_cache_dir):
    init = """\
        wfd = int(sys.argv[2])
        head = json.dumps({"kind": "ready", "payload": {"__t__": 9, "dtype": "torch.float32", "shape": [8]},
                           "sizes": []}).encode()
        os.write(wfd, len(head).to_bytes(8, "little") + head)
        """
    result = run(problem, candidate(init=init), kswarm_cache_dir)
    assert result.status is Status.CRASHED, result.reason
    assert_no_child_left()


def test_daemon_that_leaves_the_session_is_killed_too(problem, tmp_path, kswarm_cache_dir):
    pids = tmp_path / "daemon.json"
    init = f"""\
        if os.fork() == 0:                        # I: leaves at once, orphaning A
            i_pid = os.getpid()                   # read before A exists: I may be gone before A first runs
            if os.fork() == 0:                    # A: waits to be adopted, then leaves the session and starts B
                while os.getppid() == i_pid:
                    time.sleep(0.001)
                os.setsid()
                if os.fork() == 0:                # B: the daemon
                    with open({str(pids)!r} + ".tmp", "w") as f:
                        json.dump({{"daemon": os.getpid()}}, f)
                    os.replace({str(pids)!r} + ".tmp", {str(pids)!r})
                    time.sleep(120)
                os._exit(0)
            os._exit(0)
        for _ in range(500):
            if os.path.exists({str(pids)!r}):
                break
            time.sleep(0.01)
        """
    result = run(problem, candidate(init=init), kswarm_cache_dir, extra_writable=(str(tmp_path),))
    assert pids.exists(), f"the daemon never started: {result.status}: {result.reason}"
    daemon = json.loads(pids.read_text())["daemon"]
    try:
        assert result.status is not Status.TIMEOUT, result.reason
        assert not alive(daemon), "a daemonised grandchild outlived the evaluation"
    finally:
        kill_if_alive(daemon)



def test_process_waiting_for_the_child_to_exit_never_gets_to_fork(problem, tmp_path, kswarm_cache_dir):
    """W waits for the child to exit (its orphans are then adopted outside the tree) and forks a daemon at once.
    The child's descendants are killed before the child is told to exit, so W is gone before it can fork."""
    pids = tmp_path / "waiter.json"
    init = f"""\
        child = os.getpid()
        if os.fork() == 0:                        # I: leaves at once; W is adopted by the child, its subreaper
            if os.fork() == 0:                    # W
                with open({str(pids)!r} + ".tmp", "w") as f:
                    json.dump({{"waiter": os.getpid()}}, f)
                os.replace({str(pids)!r} + ".tmp", {str(pids)!r})
                while os.getppid() != child:      # adopted by the child
                    time.sleep(0.001)
                while os.getppid() == child:      # until the child exits
                    time.sleep(0.0005)
                os.setsid()
                if os.fork() == 0:
                    with open({str(pids)!r}, "w") as f:
                        json.dump({{"waiter": -1, "daemon": os.getpid()}}, f)
                    time.sleep(120)
                os._exit(0)
            os._exit(0)
        while not os.path.exists({str(pids)!r}):
            time.sleep(0.001)
        """
    result = run(problem, candidate(init=init), kswarm_cache_dir, extra_writable=(str(tmp_path),))
    seen = json.loads(pids.read_text())
    try:
        assert result.status is Status.ACCEPTED, result.reason
        assert "daemon" not in seen, "the waiter outlived the child and forked"
        assert not alive(seen["waiter"])
    finally:
        for pid in seen.values():
            if pid > 0:
                kill_if_alive(pid)


def test_daemon_left_by_a_child_that_exits_at_once_is_killed_too(problem, tmp_path, kswarm_cache_dir):
    """The child exits right after its daemon starts, so the daemon is adopted outside the tree before the parent
    may ever have seen it; it still carries the sandbox's environment marker."""
    pids = tmp_path / "daemon.json"
    init = f"""\
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                with open({str(pids)!r} + ".tmp", "w") as f:
                    json.dump({{"daemon": os.getpid()}}, f)
                os.replace({str(pids)!r} + ".tmp", {str(pids)!r})
                time.sleep(120)
            os._exit(0)
        while not os.path.exists({str(pids)!r}):
            time.sleep(0.001)
        os._exit(0)
        """
    result = run(problem, candidate(init=init), kswarm_cache_dir, extra_writable=(str(tmp_path),))
    assert pids.exists(), f"the daemon never started: {result.status}: {result.reason}"
    daemon = json.loads(pids.read_text())["daemon"]
    try:
        assert result.status is Status.EARLY_EXIT, result.reason
        assert not alive(daemon), "a daemon outlived the child that exited under it"
    finally:
        kill_if_alive(daemon)

# --- what the child can see and reach -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def observed(problem, tmp_path_factory, kswarm_cache_dir):
    """One honest candidate that records its environment, its folders and its reach, then answers correctly."""
    out = tmp_path_factory.mktemp("sandbox-observed")
    report_dir = tmp_path_factory.mktemp("sandbox-report")   # the one folder outside scratch it may write to
    report = report_dir / "seen.json"
    outside = out / "outside.txt"
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0)
    port = listener.getsockname()[1]
    top = f"""\
        seen = {{"env": dict(os.environ), "cwd": os.getcwd()}}
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
            seen["connect"] = "connected"
        except OSError as e:
            seen["connect"] = repr(e)
        for key, path in (("outside", {str(outside)!r}),
                          ("baselines", {str(kswarm_cache_dir / "baselines" / "planted.json")!r})):
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write("{{}}")
                seen[key] = path
            except OSError as e:
                seen[key] = None
        with open({str(report)!r}, "w") as f:
            json.dump(seen, f)
        """
    old = os.environ.get(SECRET_NAME)
    os.environ[SECRET_NAME] = SECRET_VALUE
    try:
        result = run(problem, candidate(top=top), kswarm_cache_dir, extra_writable=(str(report_dir),))
    finally:
        if old is None:
            os.environ.pop(SECRET_NAME, None)
        else:
            os.environ[SECRET_NAME] = old
    try:
        listener.accept()
        accepted = True
    except (BlockingIOError, socket.timeout):
        accepted = False
    finally:
        listener.close()
    assert report.exists(), f"the candidate never ran: {result.status.value}: {result.reason}"
    seen = json.loads(report.read_text())
    seen["listener_accepted"] = accepted
    return result, seen


def test_honest_candidate_is_accepted_and_the_parent_lives_on(observed):
    result, _ = observed
    assert result.status is Status.ACCEPTED, result.reason
    assert_no_child_left()


def test_child_environment_lacks_the_parents_secrets(observed):
    _, seen = observed
    env = seen["env"]
    assert SECRET_NAME not in env
    assert not [k for k, v in env.items() if SECRET_VALUE in v]


def test_child_home_and_tmpdir_are_its_scratch_folder_which_is_removed(observed):
    _, seen = observed
    env = seen["env"]
    scratch = Path(seen["cwd"])
    assert Path(env["HOME"]) == scratch and Path(env["TMPDIR"]) == scratch
    assert scratch.name.startswith("kswarm-candidate-")
    assert Path.home() != scratch
    assert not scratch.exists(), "the scratch folder outlived the child"


def test_child_cannot_reach_a_loopback_listener(observed):
    result, seen = observed
    if result.policy.get("network_isolated") is not True:
        pytest.skip("this host gives the child no network namespace; the result says so in policy")
    assert seen["connect"] != "connected"
    assert not seen["listener_accepted"]


def test_child_cannot_write_outside_its_scratch_folder(observed):
    _, seen = observed
    assert seen["outside"] is None


def test_child_cannot_write_into_the_baseline_cache(observed):
    _, seen = observed
    assert seen["baselines"] is None
