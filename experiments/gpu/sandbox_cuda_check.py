"""Does a CUDA candidate start inside the sandbox, and is /proc write-confined for it?

PYTHONPATH=. python3 experiments/gpu/sandbox_cuda_check.py     (on a CUDA host; exit status 1 on any FAIL)

1. The merged-linears candidate is verified without and with Landlock write confinement: both must be accepted,
   the confined one with ``filesystem_confined`` true (a CUDA child starts and runs kernels).
2. A probe candidate, in a confined CUDA child, runs a kernel and then tries to open for writing what the CUDA
   driver writes (its own threads' ``/proc/self/task/<tid>/comm``: allowed) and what a candidate must not
   (another process's /proc entries, /proc/sys, its own process-wide knobs: refused). Each line gives the errno.
   The files it must not write are only opened, never written.
3. The same probe under the old rule (``extra_writable = ["/proc"]``), for comparison: INFO lines only.
4. Where strace exists, the /proc files a plain (unsandboxed) CUDA start-up opens for writing: INFO lines, the
   evidence for the rule.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, VerifyPolicy

FAILED = []


def verdict(ok: bool, what: str) -> None:
    print(f"{'PASS' if ok else 'FAIL'}: {what}", flush=True)
    if not ok:
        FAILED.append(what)


# 1. ---------------------------------------------------------------------------------------------------------------
SOURCE = open("experiments/candidates/stacked_linears_merged.py").read()
for confine in (False, True):
    t0 = time.time()
    r = evaluate(EvalRequest("experiments/problems/level2/stacked_linears.py", SOURCE, device="cuda", mode="verify",
                             verify=VerifyPolicy(confine_writes=confine, timeout_s=50), cache_dir="/tmp/kswarm-c"))
    print(f"confine_writes={confine} status={r.status.value} confined={r.policy.get('filesystem_confined')} "
          f"netns={r.policy.get('network_isolated')} {time.time() - t0:.0f}s | {r.reason[:400]}", flush=True)
    verdict(r.status.value == "accepted" and (not confine or r.policy.get("filesystem_confined") is True),
            f"a CUDA child {'with' if confine else 'without'} write confinement starts and runs the candidate")

# 2. and 3. --------------------------------------------------------------------------------------------------------
PROBLEM = """import torch
import torch.nn as nn
class Model(nn.Module):
    def forward(self, x):
        return x * 2.0
def get_inputs():
    return [torch.randn(1024)]
def get_init_inputs():
    return []
"""
PROBE = """import errno, json, os, threading
import torch
import torch.nn as nn

x = torch.arange(4096, device="cuda", dtype=torch.float32)
kernel_ok = bool(((x * 2).sum() == x.sum() * 2).item())
seen = {{"kernel": kernel_ok, "threads": {{}}}}
for tid in sorted(os.listdir("/proc/self/task")):
    try:
        seen["threads"][tid] = open(f"/proc/self/task/{{tid}}/comm").read().strip()
    except OSError as e:
        seen["threads"][tid] = errno.errorcode.get(e.errno, str(e.errno))


def attempt(key, path, rewrite=False):
    try:
        name = open(path).read().encode() if rewrite else None
        fd = os.open(path, os.O_WRONLY)
        try:
            if rewrite:
                os.write(fd, name.strip()[:15])     # a thread's own name, written back as the driver would
        finally:
            os.close(fd)
        seen[key] = "ok"
    except OSError as e:
        seen[key] = errno.errorcode.get(e.errno, str(e.errno))


me = threading.get_native_id()
others = [t for t in seen["threads"] if int(t) != me]
attempt("own_thread_comm", f"/proc/self/task/{{me}}/comm", rewrite=True)
if others:
    attempt("other_thread_comm", f"/proc/self/task/{{others[0]}}/comm", rewrite=True)
attempt("own_oom_score_adj", "/proc/self/oom_score_adj")
attempt("parent_comm", f"/proc/{{os.getppid()}}/comm")
attempt("parent_oom_score_adj", f"/proc/{{os.getppid()}}/oom_score_adj")
attempt("init_comm", "/proc/1/comm")
attempt("sysctl_kernel", "/proc/sys/kernel/core_pattern")
attempt("sysctl_vm", "/proc/sys/vm/overcommit_ratio")
with open({report!r}, "w") as f:
    json.dump(seen, f)


class ModelNew(nn.Module):
    def forward(self, x):
        return x * 2.0
"""
ALLOWED = ("own_thread_comm", "other_thread_comm")
REFUSED = ("own_oom_score_adj", "parent_comm", "parent_oom_score_adj", "init_comm", "sysctl_kernel", "sysctl_vm")

work = Path(tempfile.mkdtemp(prefix="kswarm-proc-check-"))
(work / "double.py").write_text(PROBLEM)
for legacy in (False, True):
    report = work / f"seen-{'legacy' if legacy else 'narrow'}.json"
    extra = (str(work), *(("/proc",) if legacy else ()))
    r = evaluate(EvalRequest(str(work / "double.py"), PROBE.format(report=str(report)), device="cuda", mode="verify",
                             verify=VerifyPolicy(static="warn", timeout_s=120, extra_writable=extra),
                             cache_dir="/tmp/kswarm-c"))
    label = "old rule (/proc writable)" if legacy else "narrow rule (own tasks only)"
    print(f"[{label}] status={r.status.value} confined={r.policy.get('filesystem_confined')} | {r.reason[:300]}",
          flush=True)
    seen = json.loads(report.read_text()) if report.exists() else {}
    print(f"[{label}] threads of the child and their names: {seen.get('threads')}", flush=True)
    for key in (*ALLOWED, *REFUSED):
        if key in seen:
            print(f"[{label}] {key}: {seen[key]}", flush=True)
    if legacy:
        continue
    verdict(r.status.value == "accepted" and r.policy.get("filesystem_confined") is True and bool(seen.get("kernel")),
            "a confined CUDA child under the narrow /proc rule runs a kernel and is accepted")
    for key in ALLOWED:
        if key in seen:
            verdict(seen[key] == "ok", f"{key} may be written (the driver names its threads): {seen[key]}")
    for key in REFUSED:
        verdict(seen.get(key) in ("EACCES", "EPERM"), f"{key} may not be opened for writing: {seen.get(key)}")
shutil.rmtree(work, ignore_errors=True)

# 4. ---------------------------------------------------------------------------------------------------------------
if shutil.which("strace"):
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace"
        subprocess.run(["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", str(trace), sys.executable, "-c",
                        "import torch; x = torch.ones(8, device='cuda'); (x * 2).sum().item()"],
                       capture_output=True, timeout=300)
        writes = sorted({line.split('"')[1] for line in trace.read_text().splitlines()
                         if '"/proc' in line and ("O_WRONLY" in line or "O_RDWR" in line)})
        print(f"INFO: /proc files a plain CUDA start-up opens for writing: {writes}", flush=True)
else:
    print("INFO: no strace here; the /proc files the driver writes were not listed", flush=True)

print(f"RESULT: {'FAIL (' + '; '.join(FAILED) + ')' if FAILED else 'PASS'}", flush=True)
sys.exit(1 if FAILED else 0)
