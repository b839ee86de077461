"""The ncu step of a profile: nothing off CUDA, a clear ``ncu_error`` without ncu or when ncu fails, and a real
sandboxed child under the launcher whose report becomes rows.

Off the GPU host, ncu itself is stood in for by a small script (``_stand_in``): it runs the command it is given,
as ncu runs its target, and then writes a report written by hand after ncu's documented CSV layout (the fixture
of test_ncu_report_and_roofline.py), or fails at once the way ncu fails where it cannot read the counters. The
child, the private-network shim, the ``profile`` request's range and the parsing are the project's own, run for
real. The CUDA test at the end runs the real ncu on the GPU host.
"""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import torch

from evaluators import ncu as ncu_mod
from evaluators.judge import build_reference
from evaluators.ncu import NOT_FOUND, ncu_profile
from evaluators.profiling import with_ncu
from evaluators.sandbox import SandboxLimits
from tests.evaluators.test_ncu_report_and_roofline import GEMM, REPORT, SOFTMAX

REPO = Path(__file__).resolve().parents[2]
PROBLEM = REPO / "experiments/problems/level1/softmax.py"
CPU_CANDIDATE = (REPO / "tests/fixtures/candidates/honest/stable_softmax_manual.py").read_text()
GPU_CANDIDATE = (REPO / "tests/fixtures/candidates/gpu/g03_honest_triton_softmax.py").read_text()
PROFILED = {"top_ops": [], "launches": 1.0, "profiler": "torch.profiler (CUDA kernels)"}

RUNS_ITS_TARGET = """
import shutil, subprocess, sys
args = sys.argv[1:]
if args == ["--query-metrics"]:
    sys.exit(1)                       # no listing: the core metrics are asked for
valued = {"--clock-control", "--target-processes", "--profile-from-start", "--launch-count", "--metrics", "--page",
          "--print-units", "--log-file"}
opts, i = {}, 0
while args[i].startswith("--"):
    if args[i] in valued:
        opts[args[i]], i = args[i + 1], i + 2
    else:
        opts[args[i]], i = "", i + 1
assert opts["--clock-control"] == "none" and opts["--profile-from-start"] == "off", opts
rc = subprocess.call(args[i:], close_fds=False)     # the child keeps the pipes it was started with
if rc == 0:                                         # it served init, profile and bye and exited cleanly
    shutil.copyfile(REPORT_PATH, opts["--log-file"])
sys.exit(rc)
"""
FAILS_AT_ONCE = """
import sys
sys.stderr.write("==ERROR== Failed to initialize the profiler: LibraryNotLoaded\\n")
sys.exit(1)
"""


def _stand_in(tmp_path: Path, body: str) -> str:
    (tmp_path / "report.csv").write_text(REPORT)
    path = tmp_path / "ncu"
    path.write_text(f"#!{sys.executable}\nREPORT_PATH = {str(tmp_path / 'report.csv')!r}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture(scope="module")
def cpu_ref():
    return build_reference(str(PROBLEM), "default", "cpu", seed=5)


def _limits(device: str) -> SandboxLimits:
    return SandboxLimits(timeout_s=240, memory_mb=16384, device=device)


def test_nothing_is_added_off_cuda_or_when_switched_off(cpu_ref, kswarm_cache_dir) -> None:
    assert with_ncu(PROFILED, cpu_ref, CPU_CANDIDATE, _limits("cpu"), kswarm_cache_dir) == PROFILED
    cuda_ref = _as_if_on_cuda(cpu_ref)
    assert with_ncu(PROFILED, cuda_ref, CPU_CANDIDATE, _limits("cuda"), kswarm_cache_dir, enabled=False) == PROFILED
    assert with_ncu({}, cuda_ref, CPU_CANDIDATE, _limits("cuda"), kswarm_cache_dir) == {}   # no profile asked for


def test_on_cuda_without_ncu_the_profile_says_so(cpu_ref, kswarm_cache_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))                      # no ncu on PATH
    monkeypatch.setattr(ncu_mod, "NCU_ROOTS", (str(tmp_path / "nsight-compute"),))   # nor installed
    out = with_ncu(PROFILED, _as_if_on_cuda(cpu_ref), CPU_CANDIDATE, _limits("cuda"), kswarm_cache_dir)
    assert out == {**PROFILED, "ncu_error": NOT_FOUND}


def test_the_newest_installed_ncu_is_found_off_path(tmp_path) -> None:
    for version in ("2024.3.2", "2025.3.1", "2025.10.0-beta"):
        exe = tmp_path / "nsight-compute" / version / "ncu"
        exe.parent.mkdir(parents=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    found = ncu_mod.find_ncu(path=str(tmp_path / "empty"), roots=(str(tmp_path / "nsight-compute"),))
    assert found == str(tmp_path / "nsight-compute" / "2025.10.0-beta" / "ncu")
    assert ncu_mod.find_ncu(path=str(tmp_path / "empty"), roots=(str(tmp_path / "none"),)) is None


def test_a_child_under_the_launcher_is_profiled_and_its_report_becomes_rows(cpu_ref, kswarm_cache_dir,
                                                                           tmp_path) -> None:
    out = ncu_profile(cpu_ref, CPU_CANDIDATE, _limits("cpu"), kswarm_cache_dir, ncu=_stand_in(tmp_path, RUNS_ITS_TARGET))
    assert "ncu_error" not in out, out
    ncu = out["ncu"]
    assert [r["name"] for r in ncu["rows"]] == [GEMM, SOFTMAX]
    assert ncu["totals"]["profiled_launches"] == 4 and ncu["profiled_calls"] == 2
    assert ncu["rows"][0]["fraction_of_floor"] > 0                  # on the CPU class's model, here
    assert ncu["clock_control"] == "none" and ncu["writes_confined"] is True
    if sys.platform.startswith("linux") and _can_unshare():
        assert ncu["network_isolated"] is True                       # ncu and the child in their own namespace


def test_ncu_that_cannot_read_the_counters_is_an_ncu_error_naming_why(cpu_ref, kswarm_cache_dir, tmp_path) -> None:
    out = ncu_profile(cpu_ref, CPU_CANDIDATE, _limits("cpu"), kswarm_cache_dir, ncu=_stand_in(tmp_path, FAILS_AT_ONCE))
    assert out == {"ncu_error": "ncu: Failed to initialize the profiler: LibraryNotLoaded"}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (and ncu for the counters)")
def test_an_honest_triton_softmax_gets_ncu_rows_or_a_reason(kswarm_cache_dir) -> None:
    ref = build_reference(str(PROBLEM), "default", "cuda", seed=5)
    out = with_ncu(PROFILED, ref, GPU_CANDIDATE, _limits("cuda"), kswarm_cache_dir)
    assert {k: out[k] for k in PROFILED} == PROFILED
    if "ncu_error" in out:
        # where ncu cannot read the counters (some runtimes) the profile says why, naming ncu
        assert "ncu" in out["ncu_error"] and len(out["ncu_error"]) > 10, out["ncu_error"]
        return
    ncu = out["ncu"]
    names = [r["name"] for r in ncu["rows"]]
    assert any("_softmax_rows" in n for n in names), names
    assert ncu["totals"]["duration_ms"] > 0 and ncu["totals"]["dram_bytes"] > 0
    top = ncu["rows"][0]
    assert top["duration_ms"] > 0 and top["flops"] > 0 and top["arithmetic_intensity"] > 0
    # a real kernel cannot beat the floor of its own counted bytes and FLOPs at the machine model's peaks
    assert 0 < top["fraction_of_floor"] <= 1.05, top


def _as_if_on_cuda(ref):
    """The CPU reference relabelled as a CUDA one: the paths tested with it stop before any device work."""
    import dataclasses
    return dataclasses.replace(ref, device="cuda")


def _can_unshare() -> bool:
    """Whether this host lets a process make a network namespace (root, or unprivileged user namespaces)."""
    import subprocess
    probe = "import ctypes,sys; l=ctypes.CDLL(None); sys.exit(0 if l.unshare(0x40000000)==0 or " \
            "l.unshare(0x50000000)==0 else 1)"
    return subprocess.run([sys.executable, "-c", probe]).returncode == 0 and os.path.exists("/proc/self/ns/net")
