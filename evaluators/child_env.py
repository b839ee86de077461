"""What a sandboxed child is given: its environment (allow-listed variables, its own HOME and TMPDIR, its build
caches), where its build caches live (a candidate's private, seeded from the baselines' trusted ones) and where it
may write. ``evaluators/sandbox.py`` starts the child with them."""
from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Variables a child may inherit. Anything else (API keys, tokens, cloud credentials) never reaches it.
ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "CUDA_PATH",
             "LD_LIBRARY_PATH", "CC", "CXX", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
             "OPENBLAS_L2_SIZE", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "SYSTEMROOT")

# The build caches of torch and Triton, and the variable that points each at its folder. Every candidate's child
# has its own, inside its scratch folder and removed with it: a candidate could otherwise leave a built extension,
# an Inductor artefact or a Triton kernel at a predictable key for a later candidate, or the compiled baseline, to
# load. Baseline children (trusted: only the problem's own code runs in them) share one set under the cache folder,
# ``TRUSTED_BUILDS``, which no candidate's child may write to (Landlock grants it only to baseline children).
BUILD_CACHES = {"torch_extensions": "TORCH_EXTENSIONS_DIR", "inductor": "TORCHINDUCTOR_CACHE_DIR",
                "triton": "TRITON_CACHE_DIR"}
TRUSTED_BUILDS = "trusted-builds"   # under the cache folder: the baselines' shared build caches


def build_root(scratch: Path, cache_dir: Path, trusted: bool) -> Path:
    """The folder of a child's build caches: the baselines' shared one under the cache folder for a trusted child,
    else a private one in its scratch folder."""
    return Path(cache_dir) / TRUSTED_BUILDS if trusted else Path(scratch) / "builds"


SEED_MAX_BYTES = 512 << 20     # the trusted caches are copied into a candidate's own only up to this size


def seed_builds(builds: Path, cache_dir: Path) -> int:
    """Copy the baselines' trusted build caches into a candidate's private ``builds`` folder: what the trusted
    children compiled (Inductor's FX-graph and kernel caches, Triton's, extensions) is then a cache hit for a
    candidate that compiles the same code, while nothing the candidate writes reaches anyone else (a copy, not a
    link). Regular files only; nothing when the trusted caches hold more than ``SEED_MAX_BYTES``. Returns the bytes
    copied."""
    src = Path(cache_dir) / TRUSTED_BUILDS
    if not src.is_dir():
        return 0
    files: list[tuple[Path, Path, int]] = []
    total = 0
    for name in BUILD_CACHES:
        top = src / name
        for root, _, names in os.walk(top, followlinks=False):
            for n in names:
                path = Path(root) / n
                try:
                    st = path.lstat()
                except OSError:         # removed meanwhile by a trusted child's atomic rename
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                total += st.st_size
                if total > SEED_MAX_BYTES:
                    log.info("trusted build caches above %d MB: a candidate's own starts empty", SEED_MAX_BYTES >> 20)
                    return 0
                files.append((path, Path(builds) / name / path.relative_to(top), st.st_size))
    copied = 0
    for path, dest, size in files:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest, follow_symlinks=False)
            copied += size
        except OSError:
            continue
    return copied


def scrubbed_env(scratch: Path, builds: Path) -> dict[str, str]:
    """The allow-listed variables, with HOME and TMPDIR in ``scratch`` and the build caches under ``builds``."""
    env = {k: v for k, v in os.environ.items() if k in ENV_ALLOW}
    # the project first, then whatever package folders the parent was given (air-gapped hosts carry wheels there)
    paths = [str(PROJECT_ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env.update({
        "HOME": str(scratch), "TMPDIR": str(scratch), "PYTHONPATH": os.pathsep.join(paths),
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "PYTHONNOUSERSITE": "1",
        **{var: str(Path(builds) / name) for name, var in BUILD_CACHES.items()},
        # compile in-process: no worker pool that would count against the process limit
        "TORCHINDUCTOR_COMPILE_THREADS": "1",
    })
    return env


def device_nodes(device: str) -> list[str]:
    """The device files a child may open for writing: the harmless ones, and the GPU's own. Not /dev/shm, whose
    files outlive the child and whose pages no resident-memory limit sees."""
    nodes = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]
    if device.startswith("cuda"):
        nodes += [str(p) for p in Path("/dev").glob("nvidia*")] + ["/dev/dri"]
    return [n for n in nodes if os.path.exists(n)]


PROC_SELF_TASKS = "/proc/self/task"   # the child resolves /proc/self to its own pid when it makes its rules


def writable_paths(scratch: Path, builds: Path, *, trusted: bool, device: str, extra: tuple[str, ...] = ()
                   ) -> list[str]:
    """Where a child may write (Landlock): its scratch folder (a candidate's build caches are inside it), a
    baseline's shared build caches, harmless device nodes and the GPU's, and ``extra``; never the baseline records
    beside the caches.

    A CUDA child may also write to the files of its own threads, ``/proc/<its pid>/task/<tid>/...``: the CUDA driver
    (570 and later) names the threads it starts by writing ``/proc/self/task/<tid>/comm`` and fails with error 304
    (operating system) when it may not. Nothing else under /proc: not another process's entries, not /proc/sys.
    The child resolves ``/proc/self`` to its own pid and may write files there, never create or remove any
    (``child_limits.confine_writes``). Where a driver needs more, ``[verify] extra_writable = ["/proc"]`` brings back
    the whole of /proc (the old rule)."""
    shared = [str(Path(builds) / name) for name in BUILD_CACHES] if trusted else []
    paths = [str(scratch), *shared, *device_nodes(device), *extra]
    if device.startswith("cuda"):
        paths.append(PROC_SELF_TASKS)
    return paths
