"""A CUDA child may write under /proc only to its own threads' entries (the CUDA driver names its threads through
``/proc/self/task/<tid>/comm``); never another process's entries, /proc/sys, or its own process-wide knobs.

The list of writable paths is a pure function and is checked as such. The rules themselves are checked in a real
process that applies the child's own limits (``evaluators.child_limits.apply_limits``) with a CUDA child's list, which
needs no GPU: the driver's writes are played by the process itself."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from evaluators.child_limits import resolve_proc_self
from evaluators.child_env import BUILD_CACHES, PROC_SELF_TASKS, PROJECT_ROOT, writable_paths


def test_a_cuda_child_may_write_its_own_tasks_and_nothing_else_under_proc(tmp_path):
    paths = writable_paths(tmp_path / "scratch", tmp_path / "builds", trusted=False, device="cuda:0")
    under_proc = [p for p in paths if p == "/proc" or p.startswith("/proc/")]
    assert under_proc == [PROC_SELF_TASKS] == ["/proc/self/task"]


def test_a_cpu_child_may_write_nothing_under_proc(tmp_path):
    paths = writable_paths(tmp_path / "scratch", tmp_path / "builds", trusted=False, device="cpu")
    assert not [p for p in paths if p.startswith("/proc")]
    assert paths[0] == str(tmp_path / "scratch")


def test_only_a_baseline_child_may_write_the_shared_build_caches(tmp_path):
    shared = {str(tmp_path / "builds" / name) for name in BUILD_CACHES}
    baseline = writable_paths(tmp_path / "s", tmp_path / "builds", trusted=True, device="cpu")
    candidate = writable_paths(tmp_path / "s", tmp_path / "builds", trusted=False, device="cpu", extra=("/x",))
    assert shared <= set(baseline)
    assert not shared & set(candidate) and "/x" in candidate


@pytest.mark.parametrize("path, resolved", [
    ("/proc/self/task", "/proc/4242/task"), ("/proc/self", "/proc/4242"), ("/proc/selfish", "/proc/selfish"),
    ("/proc/sys/kernel", "/proc/sys/kernel"), ("/tmp/proc/self", "/tmp/proc/self"),
])
def test_proc_self_is_resolved_to_the_childs_own_pid(path, resolved):
    assert resolve_proc_self(path, 4242) == resolved


PROBE = """\
import errno, json, os, sys, threading
from evaluators.child_limits import apply_limits
from evaluators.child_env import writable_paths

scratch = sys.argv[1]
applied = apply_limits({"max_file_mb": 64, "isolate_network": False, "device": "cuda",
                        "writable": writable_paths(scratch, scratch, trusted=False, device="cuda")})
seen = {"confined": applied["filesystem_confined"]}

def attempt(key, path, data=None, flags=os.O_WRONLY):
    try:
        fd = os.open(path, flags)
        try:
            if data is not None:
                os.write(fd, data)
        finally:
            os.close(fd)
        seen[key] = "ok"
    except OSError as e:
        seen[key] = errno.errorcode.get(e.errno, str(e.errno))

# what the driver does: name this thread, and another one it started, by their comm files
attempt("own_thread_comm", f"/proc/self/task/{threading.get_native_id()}/comm", b"kswarm-main")
ready, done = threading.Event(), threading.Event()
worker = threading.Thread(target=lambda: (ready.set(), done.wait(10)))
worker.start()
ready.wait(10)
attempt("other_thread_comm", f"/proc/self/task/{worker.native_id}/comm", b"kswarm-worker")
attempt("thread_self_comm", "/proc/thread-self/comm", b"kswarm-main")
done.set()
worker.join()
# what a candidate must not do; opened for writing, never written
attempt("own_oom_score_adj", "/proc/self/oom_score_adj")
attempt("parent_comm", f"/proc/{os.getppid()}/comm")
attempt("parent_oom_score_adj", f"/proc/{os.getppid()}/oom_score_adj")
attempt("init_comm", "/proc/1/comm")
attempt("sysctl", "/proc/sys/vm/overcommit_ratio")
attempt("scratch", os.path.join(scratch, "f.txt"), b"x", os.O_WRONLY | os.O_CREAT)
attempt("file_in_own_task", f"/proc/self/task/{threading.get_native_id()}/planted", b"x", os.O_WRONLY | os.O_CREAT)
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("proc-scratch")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(scratch)], capture_output=True, text=True, timeout=120,
                         env=env, cwd=scratch)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    if not seen["confined"]:
        pytest.skip("this host has no Landlock: writes are not confined here (results record filesystem_confined)")
    return seen


def test_the_drivers_thread_naming_is_allowed(probed):
    assert probed["own_thread_comm"] == "ok"
    assert probed["other_thread_comm"] == "ok"
    assert probed["thread_self_comm"] == "ok"
    assert probed["scratch"] == "ok"


@pytest.mark.parametrize("key", ["own_oom_score_adj", "parent_comm", "parent_oom_score_adj", "init_comm", "sysctl"])
def test_every_other_write_under_proc_is_refused(probed, key):
    assert probed[key] in ("EACCES", "EPERM"), probed


def test_no_file_can_be_made_among_its_own_tasks(probed):
    assert probed["file_in_own_task"] in ("EACCES", "EPERM", "ENOENT"), probed     # procfs makes none either
