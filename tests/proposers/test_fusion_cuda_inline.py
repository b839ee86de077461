"""The inline CUDA loader: -gencode for the device's architecture (sm_90 on an H200, sm_120 on an RTX 6000
Blackwell), builds keyed by sources, functions, flags and target, each key built once per process and into its own
directory; the same loader code is what a candidate embeds."""
from __future__ import annotations

import shutil

import pytest
import torch
import torch.utils.cpp_extension

from proposers import cuda_inline
from proposers.cuda_inline import build_key, candidate_prelude, capability_of_class, cuda_arch

CUDA_SRC = r"""
__global__ void add_relu_kernel(const float* x, const float* b, float* y, long n, long c) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i < n) { float v = x[i] + b[i % c]; y[i] = v > 0.f ? v : 0.f; }
}
torch::Tensor add_relu(torch::Tensor x, torch::Tensor b) {
    auto y = torch::empty_like(x);
    long n = x.numel(), c = b.numel();
    add_relu_kernel<<<(n + 255) / 256, 256>>>(x.data_ptr<float>(), b.data_ptr<float>(), y.data_ptr<float>(), n, c);
    return y;
}
"""
CPP_SRC = "torch::Tensor add_relu(torch::Tensor x, torch::Tensor b);"


@pytest.mark.parametrize("cap, target", [((9, 0), "90"), ((12, 0), "120"), ((8, 9), "89"), ((9, 0, "a"), "90a")])
def test_arch_flag_follows_the_capability(cap, target):
    t, flag = cuda_arch(cap)
    assert t == target and flag == f"-gencode=arch=compute_{target},code=sm_{target}"


def test_hardware_classes_map_to_their_architecture():
    assert capability_of_class("h200") == (9, 0) and capability_of_class("H100") == (9, 0)
    assert capability_of_class("rtx6000-blackwell") == (12, 0)
    assert capability_of_class("cuda-sm120") == (12, 0) and capability_of_class("cuda-sm86") == (8, 6)
    with pytest.raises(ValueError, match="no CUDA architecture"):
        capability_of_class("m4")


def test_build_key_separates_sources_targets_and_flags():
    k = build_key(CUDA_SRC, CPP_SRC, ["add_relu"], "90", ("-O3",))
    assert k == build_key(CUDA_SRC, CPP_SRC, ["add_relu"], "90", ("-O3",))
    others = {build_key(CUDA_SRC + " ", CPP_SRC, ["add_relu"], "90", ("-O3",)),
              build_key(CUDA_SRC, CPP_SRC, ["add_relu"], "120", ("-O3",)),
              build_key(CUDA_SRC, CPP_SRC, ["add_relu"], "90", ("-O2",)),
              build_key(CUDA_SRC, CPP_SRC, ["add_relu", "x"], "90", ("-O3",))}
    assert k not in others and len(others) == 4


def test_each_key_builds_once_into_its_own_directory(tmp_path, monkeypatch):
    import torch.utils.cpp_extension as ext
    calls = []

    def fake_load_inline(**kw):          # torch's builder: record what it was asked to build
        calls.append(kw)
        return object()

    monkeypatch.setattr(ext, "load_inline", fake_load_inline)
    monkeypatch.setattr(cuda_inline, "_KS_CUDA_BUILT", {})
    a = cuda_inline.load(CUDA_SRC, CPP_SRC, ["add_relu"], str(tmp_path), capability=(9, 0))
    assert cuda_inline.load(CUDA_SRC, CPP_SRC, ["add_relu"], str(tmp_path), capability=(9, 0)) is a
    cuda_inline.load(CUDA_SRC, CPP_SRC, ["add_relu"], str(tmp_path), capability=(12, 0))
    assert len(calls) == 2
    flags = [c["extra_cuda_cflags"] for c in calls]
    assert flags == [["-O3", "-gencode=arch=compute_90,code=sm_90"], ["-O3", "-gencode=arch=compute_120,code=sm_120"]]
    dirs = [c["build_directory"] for c in calls]
    assert dirs[0] != dirs[1] and all(d.startswith(str(tmp_path)) for d in dirs)
    assert calls[0]["name"] == "ks_cu_" + build_key(CUDA_SRC, CPP_SRC, ["add_relu"], "90", ("-O3",))


def test_candidate_prelude_defines_the_loader():
    ns: dict = {}
    exec(compile(candidate_prelude(), "candidate.py", "exec"), ns)
    assert ns["_ks_cuda_arch"]((12, 0))[0] == "120" and callable(ns["_ks_cuda_load"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available() or shutil.which("nvcc") is None
                    or not torch.utils.cpp_extension.is_ninja_available(), reason="needs CUDA, nvcc and ninja")
def test_builds_and_runs_on_the_device(tmp_path):
    m = cuda_inline.load(CUDA_SRC, CPP_SRC, ["add_relu"], str(tmp_path))
    x, b = torch.randn(33, 70, device="cuda"), torch.randn(70, device="cuda")
    torch.testing.assert_close(m.add_relu(x, b), torch.relu(x + b))
    target, _ = cuda_arch()
    key = build_key(CUDA_SRC, CPP_SRC, ["add_relu"], target, ("-O3",))
    assert (tmp_path / key).is_dir()
    assert cuda_inline.load(CUDA_SRC, CPP_SRC, ["add_relu"], str(tmp_path)) is m
