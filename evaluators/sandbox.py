"""The parent's side of the sandbox: start a child, talk to it, watch it, and kill its whole tree.

The child runs in its own session (process group) with a scrubbed environment, its working directory, HOME and
(for a candidate) its build caches in a scratch folder, and the limits it applies to itself first thing (file size,
CPU time, network, writes). A watchdog thread in the
parent enforces wall clock, resident memory and process count over the child's whole tree, and the reason for a
kill becomes the status. The parent never dies with the child: every failure is a ``ChildFailed``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from evaluators import wire
from evaluators.child_env import BUILD_CACHES, build_root, scrubbed_env, seed_builds, writable_paths
from evaluators.result import Status

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 300.0
    memory_mb: int = 8192
    max_processes: int = 16
    max_file_mb: int = 1024
    isolate_network: bool = True
    extra_writable: tuple[str, ...] = ()
    confine_writes: bool = True
    device: str = "cpu"
    memory_why: str = ""       # how the memory limit was set, for the reason of an out_of_memory
    timeout_why: str = ""      # how the wall-clock limit was set, for the reason of a timeout
    cpu_time_s: float | None = None   # RLIMIT_CPU of a candidate's process; None: none
    cpu_time_why: str = ""     # how the CPU-time limit was set, for the reason of a timeout

    def child_side(self) -> tuple[Any, ...]:
        """The limits a child applies to itself when it starts; the others the parent's watchdog enforces and may
        set later (``Child.arm``)."""
        return (self.max_file_mb, self.isolate_network, self.extra_writable, self.confine_writes, self.device,
                self.cpu_time_s)


class ChildFailed(Exception):
    def __init__(self, status: Status, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


CPU_GRACE_S = 5            # CPU seconds between SIGXCPU (the soft limit) and SIGKILL (the hard one)
TRUSTED_ROLE = "baseline"  # the label of a child that runs the problem's own code only (evaluators/warm.py)


class Child:
    """One sandboxed child process. Use as a context manager; ``request`` sends a frame and waits for the answer.

    ``label`` names its role. A ``baseline`` child builds and times the problem's own ``Model`` (eager or
    compiled) and never sees candidate code (``evaluators/warm.py`` keeps it so); a built one may be kept and
    serve many evaluations, so it has no CPU-time limit, whose count would add up over them. It builds in the
    baselines' shared caches (``cache_dir/trusted-builds``). Any other label is a candidate's child: it gets every
    limit, and build caches of its own in its scratch folder, so that nothing it builds or plants there is seen by
    another child; it may write to no shared cache."""

    def __init__(self, limits: SandboxLimits, cache_dir: Path, label: str = "child",
                 launcher: tuple[str, ...] = ()):
        self.limits = limits
        self.launcher = tuple(launcher)   # a program the child runs under (a profiler such as ncu), or none
        self.cache_dir = Path(cache_dir)
        self.label = label
        self.scratch = Path(tempfile.mkdtemp(prefix=f"kswarm-{label}-"))
        self._marker = f"{os.getpid()}-{self.scratch.name}"   # inherited by the child's descendants
        self._kill_reason: tuple[Status, str] | None = None
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limits.timeout_s
        self._known: dict[int, psutil.Process] = {}
        self.proc: subprocess.Popen | None = None
        self.peak_rss = 0          # bytes, the most the child's tree held at once as the watchdog saw it
        self.cpu_seen = 0.0        # CPU seconds of the child's own process, as the watchdog last saw them
        self.built = False         # its subject is built (a kept baseline child)
        self.build_info: dict[str, Any] = {}   # what its build reported (compile seconds), kept with it
        self.reused = False        # it served an earlier evaluation (a kept baseline child)
        self.kept_release = None   # while kept: gives back the device memory reserved for it (evaluators.warm)

    @property
    def failed(self) -> bool:
        """The watchdog or a request ended it."""
        return self._kill_reason is not None

    def arm(self, limits: SandboxLimits) -> None:
        """Take the parent's limits (wall clock from now, memory, processes) for the work about to start. The
        limits the child applied to itself when it started cannot change."""
        if limits.child_side() != self.limits.child_side():
            raise ValueError("a started child cannot take other file, network, write or device limits")
        self.limits = limits
        self._deadline = time.monotonic() + limits.timeout_s

    # lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> "Child":
        if self.proc is None:
            self.start()
        return self

    def start(self) -> "Child":
        """Start the child process; it imports torch and brings its device up before any request arrives."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        c_read, p_write = wire.pipe()
        p_read, c_write = wire.pipe()
        self._log = open(self.scratch / "child.log", "wb")
        builds = build_root(self.scratch, self.cache_dir, self.trusted)
        for name in BUILD_CACHES:
            (builds / name).mkdir(parents=True, exist_ok=True)
        if not self.trusted:
            seed_builds(builds, self.cache_dir)
        writable = writable_paths(self.scratch, builds, trusted=self.trusted, device=self.limits.device,
                                  extra=self.limits.extra_writable)
        child_limits = {"max_file_mb": self.limits.max_file_mb, "isolate_network": self.limits.isolate_network,
                        "writable": writable if self.limits.confine_writes else None, "device": self.limits.device,
                        "cpu_time_s": self._cpu_limit(), "cpu_grace_s": CPU_GRACE_S}
        env = {**scrubbed_env(self.scratch, builds), "KSWARM_SANDBOX": self._marker}
        self.proc = subprocess.Popen(
            [*self.launcher, sys.executable, "-m", "evaluators.child", str(c_read), str(c_write),
             json.dumps(child_limits)],
            pass_fds=(c_read, c_write), cwd=self.scratch, env=env,
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        os.close(c_read)
        os.close(c_write)
        self._rfd, self._wfd = p_read, p_write
        self._watch = threading.Thread(target=self._watchdog, name=f"kswarm-watchdog-{self.label}", daemon=True)
        self._watch.start()
        return self

    @property
    def trusted(self) -> bool:
        """A baseline's child: only the problem's own code runs in it."""
        return self.label == TRUSTED_ROLE

    def _cpu_limit(self) -> float | None:
        return None if self.trusted else self.limits.cpu_time_s

    def __exit__(self, *exc: Any) -> None:
        if self.proc is None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            return
        # From here on this thread ends the tree. A watchdog that saw the child die is let finish its own
        # clean-up, so that nothing it killed is still exiting when the evaluation returns.
        self._stop.set()
        self._watch.join()
        if self.proc is not None and self.proc.poll() is None and self._kill_reason is None:
            # The child is its tree's subreaper only while it lives: its descendants die before it is told to go,
            # or they would be adopted outside the tree when it exits.
            self._kill_all(self._freeze_descendants())
            # Its answer says it has flushed its output and runs nothing; its interpreter's own exit (torch's
            # teardown, about a second on a CPU) is not waited for: the tree is killed below. A child that must
            # exit by itself (under ncu, whose report is written at the exit) is sent "bye" by its user first.
            try:
                wire.send(self._wfd, "bye")
                wire.recv(self._rfd, deadline=time.monotonic() + 5)
            except (wire.WireError, OSError):
                pass
        self.kill_tree()
        for fd in (self._rfd, self._wfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.scratch / "child.log").read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    # watching --------------------------------------------------------------------------------------------
    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for p in procs:
            self._known.setdefault(p.pid, p)
        return procs

    def _watchdog(self) -> None:
        while not self._stop.is_set() and self.proc.poll() is None:
            procs = self._tree()
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            if procs:
                try:
                    t = procs[0].cpu_times()
                    self.cpu_seen = max(self.cpu_seen, t.user + t.system)
                except psutil.Error:
                    pass
            if len(procs) > self.limits.max_processes:
                self._kill(Status.RESOURCE_ABUSE, f"started {len(procs)} processes, over the limit of "
                           f"{self.limits.max_processes}; candidates must not spawn processes")
            elif rss > self.limits.memory_mb << 20:
                self._kill(Status.OUT_OF_MEMORY, f"used {rss >> 20} MB of resident memory, over the limit of "
                           f"{self.limits.memory_mb} MB{self._why(self.limits.memory_why)}; reduce the candidate's "
                           "memory or raise verify.memory_mb")
            elif time.monotonic() > self._deadline:
                self._kill(Status.TIMEOUT, self._timeout_reason())
            self._stop.wait(0.05)
        if not self._stop.is_set():
            # the child died on its own: what it left behind may hold its end of the pipe open, so the parent's
            # read would wait for the deadline instead of seeing the exit
            self.kill_tree()

    def _kill(self, status: Status, reason: str) -> None:
        if self._kill_reason is None:
            self._kill_reason = (status, reason)
            log.info("%s: killing child tree: %s", self.label, reason)
        self.kill_tree()

    def _freeze_descendants(self, root_too: bool = False) -> list[psutil.Process]:
        """Stop (SIGSTOP) every process below the child, scanning until two scans in a row find none new: a stopped
        process cannot fork, and an orphan re-parented to the child (its subreaper) shows up in the next scan."""
        frozen: dict[int, psutil.Process] = {}
        try:
            root = psutil.Process(self.proc.pid)
            if root_too:
                root.suspend()
        except psutil.Error:
            return [p for pid, p in self._known.items() if root_too or pid != self.proc.pid]
        quiet = 0
        for _ in range(1000):
            try:
                found = root.children(recursive=True)
            except psutil.Error:
                break
            new = [p for p in found if p.pid not in frozen]
            for p in new:
                frozen[p.pid] = p
                self._known.setdefault(p.pid, p)
                try:
                    p.suspend()
                except psutil.Error:
                    pass
            quiet = 0 if new else quiet + 1
            if quiet >= 2:
                break
        procs = {**self._known, **frozen}
        if not root_too:
            procs.pop(self.proc.pid, None)
        return list(procs.values())

    def _strays(self) -> list[psutil.Process]:
        """Processes outside the tree that still carry this child's environment marker (orphans adopted elsewhere
        after the child itself died)."""
        found = []
        for p in psutil.process_iter():
            if p.pid in (os.getpid(), self.proc.pid):
                continue
            try:
                if p.environ().get("KSWARM_SANDBOX") == self._marker:
                    found.append(p)
            except psutil.Error:
                pass
        return found

    @staticmethod
    def _kill_all(procs: list[psutil.Process]) -> None:
        for p in procs:
            try:
                p.kill()
            except psutil.Error:
                pass
        # SIGKILL is delivered asynchronously: wait until the processes are really gone (or zombies)
        psutil.wait_procs(procs, timeout=5)

    def kill_tree(self) -> None:
        if self.proc is None:
            return
        procs = self._freeze_descendants(root_too=True)
        self._kill_all(procs)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        self._kill_all(self._strays())
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("%s: child %d did not die after SIGKILL", self.label, self.proc.pid)

    # talking ---------------------------------------------------------------------------------------------
    def request(self, kind: str, payload: Any = None, max_bytes: int = 1 << 36,
                device: str | None = None) -> tuple[str, Any]:
        """Send one request and read the answer; with a CUDA ``device`` its large tensors arrive on that device
        (``wire.recv``)."""
        try:
            wire.send(self._wfd, kind, payload)
            return wire.recv(self._rfd, max_bytes=max_bytes, deadline=self._deadline, device=device)
        except wire.WireTimeout:
            self._kill(Status.TIMEOUT, self._timeout_reason())
        except (wire.WireError, OSError, BrokenPipeError) as e:
            self._classify_exit(e)
        raise ChildFailed(*self._kill_reason)

    @staticmethod
    def _why(why: str) -> str:
        return f" ({why})" if why else ""

    def _timeout_reason(self) -> str:
        return (f"ran past the wall-clock limit of {self.limits.timeout_s:.0f} s{self._why(self.limits.timeout_why)}; "
                "look for a hang or raise verify.timeout_s")

    def _hit_cpu_limit(self, sig: int) -> bool:
        """Killed by RLIMIT_CPU: SIGXCPU at the soft limit, or SIGKILL at the hard one (a candidate that ignored
        SIGXCPU), which the watchdog tells from any other SIGKILL by the CPU time it last saw."""
        limit = self._cpu_limit()
        if limit is None:
            return False
        return sig == getattr(signal, "SIGXCPU", 24) or (sig == signal.SIGKILL and self.cpu_seen >= int(limit))

    def _cpu_reason(self) -> str:
        return (f"used its CPU-time limit of {self._cpu_limit():.0f} s{self._why(self.limits.cpu_time_why)} and "
                "was killed (RLIMIT_CPU); look for a busy loop or a thread left running, or raise [sandbox] "
                "cpu_time_s")

    def _classify_exit(self, err: Exception) -> None:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._kill(Status.CRASHED, f"broke the protocol ({err}); its process was killed")
            return
        if self._kill_reason is not None:
            return
        tail = self.log_tail(300).strip().splitlines()
        last = f" (last output: {tail[-1][:160]})" if tail else ""
        if code >= 0:
            self._kill_reason = (Status.EARLY_EXIT, f"the process exited with code {code} before the checks "
                                 f"finished; candidate code must not call sys.exit, os._exit or exit{last}")
        elif -code == getattr(signal, "SIGXFSZ", 25):
            self._kill_reason = (Status.RESOURCE_ABUSE, f"wrote a file over the limit of "
                                 f"{self.limits.max_file_mb} MB; candidates must not write large files")
        elif self._hit_cpu_limit(-code):
            self._kill_reason = (Status.TIMEOUT, self._cpu_reason())
        else:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            self._kill_reason = (Status.CRASHED, f"the process was killed by {name}{last}")
