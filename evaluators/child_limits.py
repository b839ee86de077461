"""The limits a sandboxed child applies to itself when it starts, before it imports torch or loads any candidate
code: no new privileges, its own network namespace, writes confined to its own folders (Landlock), capabilities
dropped, file size and CPU time bounded, and itself the subreaper of whatever it starts. ``evaluators/child.py``
calls ``apply_limits`` first."""
from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys

_PR_SET_NO_NEW_PRIVS, _PR_SET_CHILD_SUBREAPER = 38, 36
_SYS_LANDLOCK = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
_FILE_WRITES = (1 << 1) | (1 << 14)   # Landlock: write to a file, truncate one; the rights a file's rule may take
_PINNED: list[int] = []               # O_PATH descriptors of the /proc folders a rule names, open while we live


def resolve_proc_self(path: str, pid: int) -> str:
    """``/proc/self/...`` as ``/proc/<pid>/...``: a rule names this process's own entries, whichever way a later
    write spells them (``/proc/self``, ``/proc/thread-self``, ``/proc/<pid>``: all lead to the same entries)."""
    if path == "/proc/self" or path.startswith("/proc/self/"):
        return f"/proc/{pid}" + path[len("/proc/self"):]
    return path


def _in_proc(path: str) -> bool:
    return path == "/proc" or path.startswith("/proc/")


def confine_writes(libc, writable: list[str]) -> bool:
    """Landlock: from here on this process and its descendants may write only beneath ``writable``."""
    import platform
    import struct
    nums = _SYS_LANDLOCK.get(platform.machine())
    if nums is None:
        return False
    create, add_rule, restrict = nums
    abi = libc.syscall(create, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    if abi < 1:
        return False
    rights = 0
    for bit in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12):  # write file, remove dir/file, make char/dir/reg/sock/fifo/block/sym
        rights |= 1 << bit
    if abi >= 2:
        rights |= 1 << 13  # refer (rename/link across directories)
    if abi >= 3:
        rights |= 1 << 14  # truncate
    if abi >= 6:
        # also scoped: no signals to, and no abstract unix sockets of, processes outside this sandbox
        attr = ctypes.create_string_buffer(struct.pack("<QQQ", rights, 0, 0x1 | 0x2))
        size = 24
    else:
        attr = ctypes.create_string_buffer(struct.pack("<Q", rights))
        size = 8
    ruleset = libc.syscall(create, attr, ctypes.c_size_t(size), 0)
    if ruleset < 0:
        return False
    try:
        for path in writable:
            path = resolve_proc_self(path, os.getpid())
            if not os.path.exists(path):
                continue
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            # a file (a device node) takes only file rights; the directory rights make the rule invalid. Under
            # /proc only existing files may be written, and the folder stays open: a rule holds the inode it was
            # made on, and procfs makes a new inode for an entry whose dentry was dropped from the cache
            proc = _in_proc(path)
            allowed = rights if os.path.isdir(path) and not proc else (rights & _FILE_WRITES)
            try:
                beneath = ctypes.create_string_buffer(struct.pack("<Qi", allowed, fd))
                if libc.syscall(add_rule, ruleset, 1, beneath, 0) != 0:
                    return False
            finally:
                if proc:
                    _PINNED.append(fd)
                else:
                    os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        return libc.syscall(restrict, ruleset, 0) == 0
    finally:
        os.close(ruleset)


def drop_capabilities(libc) -> bool:
    """Root without capabilities: still root-owned files, but no reading other processes' memory or environment
    (/proc/<pid>/environ needs CAP_SYS_PTRACE past Landlock), no raw sockets, no changing limits back."""
    import struct
    for cap in range(64):  # the bounding set, so that nothing exec'd regains them
        if libc.prctl(24, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:  # PR_CAPBSET_DROP; EINVAL: no such cap
            break
    header = ctypes.create_string_buffer(struct.pack("<Ii", 0x20080522, 0))   # _LINUX_CAPABILITY_VERSION_3
    data = ctypes.create_string_buffer(bytes(24))                              # two sets of (eff, perm, inh) = 0
    return libc.capset(header, data) == 0


def new_network_namespace(libc) -> bool:
    """Move this process into a network namespace of its own (with a user namespace where that is what the kernel
    allows an unprivileged process): no interface but a loopback that is down. Whether it was done; ``errno`` says
    why not."""
    clone_newnet, clone_newuser = 0x40000000, 0x10000000
    return any(libc.unshare(flags) == 0 for flags in (clone_newnet, clone_newnet | clone_newuser))


def limit_cpu(seconds: float | None, grace: int) -> int | None:
    """RLIMIT_CPU: SIGXCPU once this process has used ``seconds`` of CPU time (all its threads together), SIGKILL
    ``grace`` seconds later in case SIGXCPU is caught or ignored. Both kill by default; the parent reports either
    as a timeout that names the limit. Returns the soft limit set, or None."""
    if seconds is None:
        return None
    soft = max(1, int(seconds))
    hard = soft + max(1, grace)
    _, hard_now = resource.getrlimit(resource.RLIMIT_CPU)
    if hard_now != resource.RLIM_INFINITY:   # a limit may only be lowered
        hard = min(hard, hard_now)
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
    return soft


def apply_limits(limits: dict) -> dict:
    """Limits the candidate cannot lift later: file size, CPU time, no core dumps, writes confined to scratch and
    build caches, orphans kept in this tree, and (where the OS allows) no network."""
    applied = {}
    fsize = int(limits.get("max_file_mb", 1024)) << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    applied["max_file_mb"] = limits.get("max_file_mb", 1024)
    applied["cpu_time_s"] = limit_cpu(limits.get("cpu_time_s"), int(limits.get("cpu_grace_s", 5)))
    applied["network_isolated"] = False
    applied["filesystem_confined"] = False
    if not sys.platform.startswith("linux"):
        return applied
    libc = ctypes.CDLL(None, use_errno=True)
    # orphans of the candidate's processes are re-parented here, so the parent's watchdog still sees them
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if limits.get("isolate_network", True):
        applied["network_isolated"] = new_network_namespace(libc)
    if limits.get("writable"):
        applied["filesystem_confined"] = confine_writes(libc, list(limits["writable"]))
    # Python ignores SIGXFSZ; the default action kills the process, which the parent reports as resource abuse
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    applied["capabilities_dropped"] = drop_capabilities(libc)
    return applied
