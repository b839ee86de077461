"""Ray temp dirs short enough for Ray's socket paths.

Ray puts its sockets at ``<temp_dir>/session_<date>_<time>_<usec>_<pid>/sockets/<name>``, and a Unix socket's
path is limited to 107 bytes on Linux (103 on macOS). Past the limit Ray's dashboard fails to start and a job
submission waits for it until it times out, so a temp dir is checked before Ray is given it.
"""
from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

# What Ray appends below the temp dir, at its longest: "/session_2026-12-02_03-31-03_293138_<pid of up to 7
# digits>" (43 bytes), "/sockets/" (9) and "dash_PlatformEventsHead", its longest socket name (23).
RAY_SUFFIX_BYTES = 43 + 9 + 23


def socket_path_limit() -> int:
    """The longest AF_UNIX path this OS takes, in bytes (without the terminating NUL)."""
    return (104 if sys.platform == "darwin" else 108) - 1


def max_temp_dir_bytes() -> int:
    return socket_path_limit() - RAY_SUFFIX_BYTES


class TempDirTooLong(ValueError):
    """A Ray temp dir whose socket paths would pass the OS limit."""


def check_temp_dir(path: str | Path) -> str:
    """``path`` made absolute, or ``TempDirTooLong`` naming the limit and what to do instead."""
    full = str(Path(path).expanduser().absolute())
    n, most = len(full.encode()), max_temp_dir_bytes()
    if n > most:
        raise TempDirTooLong(
            f"Ray temp dir {full} is {n} bytes; Ray's socket paths under it would pass the {socket_path_limit()}-byte "
            f"limit of Unix sockets: give a temp dir of at most {most} bytes, e.g. /tmp/ray")
    return full


def short_temp_dir(key: str, prefix: str = "kswarm-ray") -> str:
    """A temp dir for one campaign or test session (``key`` names it: a path, say), created if missing, under the
    system temp dir, or under /tmp where that is too deep (macOS's per-user temp dir is)."""
    tag = hashlib.sha1(key.encode()).hexdigest()[:8]
    for root in (tempfile.gettempdir(), "/tmp"):
        path = Path(root) / f"{prefix}-{tag}"
        if len(str(path).encode()) <= max_temp_dir_bytes():
            path.mkdir(parents=True, exist_ok=True)
            return str(path)
    raise TempDirTooLong(f"no temp dir short enough for Ray's sockets under {tempfile.gettempdir()} or /tmp: "
                         f"set TMPDIR to a short folder, e.g. /tmp")
