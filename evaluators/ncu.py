"""Nsight Compute (ncu) on an accepted CUDA candidate: per-kernel hardware counters and where each kernel stands on
the roofline of the hardware class's machine model.

``ncu_profile`` builds the candidate again in a fresh sandboxed child started under ncu (``Child(launcher=...)``),
loads it as the judged child did (the ``init`` request), and asks for a few calls between ``cudaProfilerStart`` and
``cudaProfilerStop`` (the ``profile`` request with ``range``), so that ncu, started with ``--profile-from-start
off``, counts only those calls and none of the build, warm-up or input making. ncu replays each kernel once per
pass of counters; its report (``--csv``, one row per kernel launch and metric) is parsed here into rows, one per
kernel name, with per-call figures: time, DRAM bytes read and written, FLOPs by precision (the SASS float counters
and, where the chip has them, the tensor-pipe ones), the SM and DRAM throughput as a share of peak, and from
those the arithmetic intensity, the compute and memory floors on the machine model and the fraction of the floor
the kernel reaches. Clocks are left alone (``--clock-control none``): the figures are those of the clocks the
timing saw.

A profile never changes a verdict. Where ncu is missing, cannot read the counters (on some runtimes it stops with
``Failed to initialize the profiler: LibraryNotLoaded``), or the child under it fails, the answer is
``{"ncu_error": why}``; nothing here raises.

What the child under ncu is allowed beyond a judged child, and why (``ncu_limits``):
- network: ncu's front end and its injection library inside the child talk over TCP on loopback (ncu's ``--port``,
  from 49152), and a child that makes its own network namespace could not reach the front end. So the child makes
  none; instead ncu and the child are started together in a private network namespace with only a loopback
  (``python -m evaluators.ncu netns -- ncu ...``), where the child reaches nothing but ncu. Where no namespace can
  be made, they run on the host's network, as a judged child does then (``network_isolated`` says which).
- wall clock, memory and processes: more of each, for ncu's replay passes and its front end, whose resident memory
  counts in the child's tree.
- writes: none. The child still confines its own writes (Landlock) to its scratch, the build caches and the
  devices; ncu's front end runs outside that confinement (the child applies it to itself once started), writes its
  report into a folder the child cannot write, and its injection writes temporary files under TMPDIR, the scratch.
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import glob
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from evaluators.ncu_report import NCU_MAX_KERNELS, ncu_messages, parse_csv, select_metrics, summarise

log = logging.getLogger(__name__)

NCU_ROOTS = ("/opt/nvidia/nsight-compute", "/usr/local/cuda/nsight-compute", "/opt/nvidia/nsight-compute-*")
NOT_FOUND = "ncu not found; install Nsight Compute or put ncu on PATH"
NCU_CALLS = 2            # profiled calls: every kernel of each is replayed once per pass, so few are enough
NCU_EXTRA_S = 180.0      # wall clock added to the candidate's limit: ncu's start-up and replay passes
NCU_MEMORY_MB = 2048     # resident memory added: ncu's front end counts in the child's tree
NCU_PROCESSES = 4        # processes added: ncu's front end and its helpers
REPORT_WAIT_S = 60.0     # how long ncu may take to write its report once the child has exited
QUERY_TIMEOUT_S = 60.0

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


# finding ncu and building its command --------------------------------------------------------------------------
def find_ncu(path: str | None = None, roots: Sequence[str] | None = None) -> str | None:
    """``ncu`` on PATH, else the newest under Nsight Compute's usual install folders (``/opt/nvidia/nsight-compute/
    <version>/ncu``); None when there is none."""
    found = shutil.which("ncu", path=path)
    if found:
        return found
    candidates: list[Path] = []
    for root in (NCU_ROOTS if roots is None else roots):
        for folder in glob.glob(root):
            candidates += [p for p in Path(folder).glob("*/ncu") if os.access(p, os.X_OK)]
            if (Path(folder) / "ncu").is_file() and os.access(Path(folder) / "ncu", os.X_OK):
                candidates.append(Path(folder) / "ncu")
    if not candidates:
        return None
    return str(max(candidates, key=lambda p: _version_key(p.parent.name)))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name)) or (0,)


@functools.lru_cache(maxsize=8)
def query_metrics(exe: str) -> str | None:
    """ncu's list of the device's metric base names (``--query-metrics``), or None when it cannot give one."""
    try:
        done = subprocess.run([exe, "--query-metrics"], capture_output=True, text=True, timeout=QUERY_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.info("ncu --query-metrics failed: %s", e)
        return None
    if done.returncode != 0:
        log.info("ncu --query-metrics exited with %d: %s", done.returncode, done.stderr[-300:])
        return None
    return done.stdout


def launcher(exe: str, metrics: Iterable[str], report: Path, *, private_network: bool,
             max_kernels: int = NCU_MAX_KERNELS) -> tuple[str, ...]:
    """The program prefixed to the child's command: ncu with its options (clocks left alone; only the child itself
    and only between cudaProfilerStart and cudaProfilerStop; the report as CSV in base units into ``report``),
    behind the private-network shim when ``private_network``."""
    shim = (sys.executable, "-m", "evaluators.ncu", "netns", "--") if private_network else ()
    return (*shim, exe, "--clock-control", "none", "--target-processes", "application-only",
            "--profile-from-start", "off", "--launch-count", str(max_kernels), "--metrics", ",".join(metrics),
            "--csv", "--page", "details", "--print-units", "base", "--log-file", str(report))


def ncu_limits(limits):
    """The limits of the child under ncu: the judged child's, with the additions the module docstring explains."""
    changes: dict[str, Any] = {
        "timeout_s": limits.timeout_s + NCU_EXTRA_S,
        "timeout_why": f"the candidate's limit + {NCU_EXTRA_S:.0f} s for ncu's start-up and replay passes",
        "memory_mb": limits.memory_mb + NCU_MEMORY_MB,
        "memory_why": f"the candidate's limit + {NCU_MEMORY_MB} MB for ncu's front end",
        "max_processes": limits.max_processes + NCU_PROCESSES,
        "isolate_network": False,     # the shim makes the namespace, for ncu and the child together
    }
    if getattr(limits, "cpu_time_s", None) is not None:
        changes["cpu_time_s"] = limits.cpu_time_s + NCU_EXTRA_S
    return dataclasses.replace(limits, **changes)


# the private-network shim (python -m evaluators.ncu netns -- CMD...) -------------------------------------------
def _private_network() -> str | None:
    """Move this process into a new network namespace and bring its loopback up. None when done; the reason when
    no namespace could be made (this process is then still on the host's network). Exits when a namespace was made
    but its loopback stays down, since ncu could not reach its own child there."""
    import fcntl
    import socket
    import struct
    from evaluators.child_limits import new_network_namespace
    libc = ctypes.CDLL(None, use_errno=True)
    if not new_network_namespace(libc):
        return f"no network namespace could be made ({os.strerror(ctypes.get_errno())})"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            ifr = fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
            flags = struct.unpack("16sH14x", ifr)[1]
            fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
    except OSError as e:
        sys.stderr.write(f"kswarm-ncu: the private network namespace's loopback could not be brought up ({e}); "
                         "set verify isolate_network off to run ncu on the host's network\n")
        sys.exit(3)
    return None


def _network_isolated(pid: int) -> bool | None:
    """Whether process ``pid`` is in another network namespace than this one (None where that cannot be read)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    except OSError:
        return None


def main(argv: Sequence[str]) -> None:
    if len(argv) < 3 or argv[0] != "netns" or argv[1] != "--":
        sys.exit("usage: python -m evaluators.ncu netns -- COMMAND [ARGS...]")
    why = _private_network() if sys.platform.startswith("linux") else "not Linux"
    if why:
        sys.stderr.write(f"kswarm-ncu: on the host's network: {why}\n")
    os.execvp(argv[2], list(argv[2:]))


# in the child ---------------------------------------------------------------------------------------------------
def child_calls_in_range(state: dict, msg: dict, *, torch, inp) -> dict[str, Any]:
    """In the child under ncu: the built model called ``calls`` times on fresh inputs, on CUDA between
    cudaProfilerStart and cudaProfilerStop, so that ncu (--profile-from-start off) sees those calls only."""
    model, device = state["model"], state["device"]
    inputs = inp.make_inputs(state["problem"], int(msg["seed"]), device)
    calls = max(1, int(msg.get("calls", NCU_CALLS)))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
    try:
        with torch.no_grad():
            for _ in range(calls):
                model(*inputs)
        if cuda:
            torch.cuda.synchronize()
    finally:
        if cuda:
            torch.cuda.profiler.stop()
    return {"profiled_calls": calls, "range": "cudaProfilerStart/Stop" if cuda else "none (not CUDA)"}


# the whole step ---------------------------------------------------------------------------------------------------
def ncu_profile(ref, candidate_source: str, limits, cache_dir: Path, *, calls: int = NCU_CALLS,
                ncu: str | None = None) -> dict[str, Any]:
    """``{"ncu": {...}}`` for the candidate built in a fresh child under ncu, or ``{"ncu_error": why}``. ``limits``
    are the judged child's (``ncu_limits`` widens them); the caller holds the device alone. Never raises."""
    exe = ncu or find_ncu()
    if exe is None:
        return {"ncu_error": NOT_FOUND}
    try:
        return _profile(exe, ref, candidate_source, limits, Path(cache_dir), calls)
    except Exception as e:   # a profile is optional: whatever goes wrong here leaves the verdict as it is
        log.exception("ncu profile failed")
        return {"ncu_error": f"{type(e).__name__}: {e}"[:300]}


def _profile(exe: str, ref, source: str, limits, cache_dir: Path, calls: int) -> dict[str, Any]:
    from evaluators.judge import Rejected, init_child
    from evaluators.machine_specs import machine_spec
    from evaluators.machines import hardware_class
    from evaluators.sandbox import Child, ChildFailed

    metrics = select_metrics(query_metrics(exe))
    folder = Path(tempfile.mkdtemp(prefix="kswarm-ncu-report-"))   # outside the child's writable set
    report = folder / "ncu.csv"
    failure, tail, ready, isolated = "", "", {}, None
    try:
        prefix = launcher(exe, metrics, report, private_network=limits.isolate_network)
        with Child(ncu_limits(limits), cache_dir, label="ncu", launcher=prefix) as child:
            try:
                path = child.scratch / "candidate.py"
                path.write_text(source)
                ready = init_child(child, "candidate", ref, candidate_path=path, warmup=1)
                isolated = _network_isolated(child.proc.pid)
                kind, reply = child.request("profile", {"seed": ref.seed + 11, "calls": calls, "range": True})
                if kind != "profile":
                    failure = str((reply or {}).get("message", kind))
                else:
                    child.request("bye")                    # the child exits; ncu then writes its report
                    child.proc.wait(timeout=REPORT_WAIT_S)
            except (Rejected, ChildFailed) as e:
                failure = e.reason
            except subprocess.TimeoutExpired:
                failure = f"ncu wrote no report within {REPORT_WAIT_S:.0f} s of the child's exit"
            tail = child.log_tail(8000)
        text = report.read_text(errors="replace") if report.is_file() else ""
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    launches = parse_csv(text)
    if not launches:
        said = ncu_messages(text + "\n" + tail)
        if said:
            why = f"ncu: {said}"
        elif failure:
            why = f"the child under ncu failed: {failure}"
        else:
            last = " | ".join(line.strip() for line in (text or tail).strip().splitlines()[-3:])
            why = f"ncu profiled no kernel in the profiled calls (last output: {last[:200]})"
        return {"ncu_error": why[:500]}
    device_name = ready.get("device_name", "")
    spec = machine_spec(hardware_class(ref.device, device_name), device_name=device_name)
    summary = summarise(launches, calls, spec)
    summary.update({"ncu": exe, "clock_control": "none", "metrics": len(metrics),
                    "tensor_metrics": [m for m in metrics if m.startswith("sm__ops_path_tensor")],
                    "network_isolated": isolated,
                    "writes_confined": (ready.get("applied_limits") or {}).get("filesystem_confined")})
    if failure:
        summary["warning"] = f"the child under ncu failed after its calls were profiled: {failure}"[:300]
    return {"ncu": summary}


if __name__ == "__main__":
    main(sys.argv[1:])
