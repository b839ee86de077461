"""The evaluator names a device's hardware class exactly as the cluster does (one mapping, so a result's class is
the class its work was pinned to), and the roofline floor of a class never exceeds what its fastest member can do,
so an honest kernel on a big chip is never held as a suspect speedup."""
from __future__ import annotations

import pytest

from cluster import hardware as hw
from evaluators.machines import hardware_class, machine_model

CUDA_NAMES = ["NVIDIA H200", "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA A100-SXM4-80GB", "NVIDIA L40S",
              "NVIDIA RTX PRO 6000 Blackwell Server Edition", "NVIDIA RTX PRO 6000 Blackwell Workstation Edition"]


@pytest.mark.parametrize("name", CUDA_NAMES)
def test_named_cuda_devices_get_the_clusters_class(name):
    assert hardware_class("cuda:0", name) == hw.cuda_class(name, 9, 0)
    assert hardware_class("cuda:0", name) in hw.NAMED_CUDA_CLASSES


@pytest.mark.parametrize("name", ["NVIDIA GH200 480GB", "NVIDIA L40", "NVIDIA GeForce RTX 4090"])
def test_unnamed_cuda_devices_stay_out_of_the_named_classes(name):
    cls = hardware_class("cuda:0", name)
    assert cls not in hw.NAMED_CUDA_CLASSES
    assert cls == "cuda" or cls.startswith("cuda-sm")


@pytest.mark.parametrize("brand", ["Apple M1", "Apple M2 Ultra", "Apple M3 Max", "Apple M4", "Apple M4 Pro",
                                   "Apple M4 Max", "Apple MPS"])
def test_apple_chips_get_the_clusters_class(brand):
    assert hardware_class("mps", brand) == hw.apple_class(brand)


# datasheet memory bandwidths of the largest chip in each generation, GB/s
@pytest.mark.parametrize("brand,gbs", [("Apple M4 Max", 546), ("Apple M4 Pro", 273), ("Apple M3 Ultra", 819),
                                       ("Apple M2 Ultra", 800), ("Apple M1 Ultra", 800), ("NVIDIA H200", 4800),
                                       ("NVIDIA GH200 144G HBM3e", 4900), ("NVIDIA B200", 8000)])
def test_floor_is_below_what_the_fastest_chip_of_the_class_moves(brand, gbs):
    device = "mps" if brand.startswith("Apple") else "cuda:0"
    model = machine_model(hardware_class(device, brand))
    one_gb = 1e9
    assert model.floor_seconds(0.0, one_gb) <= one_gb / (gbs * 1e9)


def test_a_later_apple_generation_gets_generous_ceilings():
    model = machine_model(hardware_class("mps", "Apple M7 Ultra"))
    assert model.hardware == "m7"
    assert model.mem_bandwidth_gbs >= 4000


# --- the floor in a real benchmark ----------------------------------------------------------------------------------

PROBLEM = """\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return x * 2.0


def get_inputs():
    return [torch.randn(4096)]


def get_init_inputs():
    return []
"""
CANDIDATE = PROBLEM.replace("class Model(", "class ModelNew(").replace("x * 2.0", "x + x")


def _bench(tmp_path, cache_dir):
    from evaluators.pipeline import evaluate
    from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy

    problem = tmp_path / "double.py"
    problem.write_text(PROBLEM)
    return evaluate(EvalRequest(problem_path=str(problem), candidate_source=CANDIDATE, device="cpu", mode="bench",
                                verify=VerifyPolicy(seed=3), cache_dir=str(cache_dir),
                                timing=TimingPolicy(baselines=("eager",), time_cap_s=0.5, min_samples=10)))


def test_an_honest_candidate_runs_above_the_floor(tmp_path, kswarm_cache_dir):
    from evaluators.result import Status

    result = _bench(tmp_path, kswarm_cache_dir)
    assert result.status is Status.ACCEPTED, result.reason
    assert result.profile["hardware"] == "cpu"
    assert 0 < result.profile["floor_ms"] < result.candidate.median_ms


def test_a_time_below_the_floor_is_held_as_suspect(tmp_path, kswarm_cache_dir, monkeypatch):
    """A machine a million times slower than this one: every honest time is now below its floor."""
    from evaluators import timing_result
    from evaluators.machines import MachineModel
    from evaluators.result import Status

    monkeypatch.setattr(timing_result, "machine_model", lambda hw: MachineModel(hw, {"float32": 1e-9}, 1e-4, 1 << 20))
    result = _bench(tmp_path, kswarm_cache_dir)
    assert result.status is Status.SUSPECT_SPEEDUP, result.reason
    assert "below the roofline floor" in result.reason and "bytes" in result.reason
    assert result.speedup is not None
    assert result.profile["floor_flops"] == 0   # x * 2 has no FLOP-bearing op: only the bytes bound


# --- the compute ceiling: FLOPs counted on the reference ------------------------------------------------------------

GEMM = """import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(256, 256)

    def forward(self, x):
        return torch.relu(self.fc(x))


def get_inputs():
    return [torch.randn(64, 256)]


def get_init_inputs():
    return []
"""
GEMM_THEN_SUM = GEMM.replace("torch.relu(self.fc(x))", "self.fc(x).sum(dim=1, keepdim=True)")
TWO_GEMMS = GEMM.replace("self.fc = nn.Linear(256, 256)", "self.fc = nn.Linear(256, 512)\n        self.out = "
                         "nn.Linear(512, 256)").replace("torch.relu(self.fc(x))", "self.out(self.fc(x))")


@pytest.mark.parametrize("source,floor", [(GEMM, 2 * 64 * 256 * 256), (GEMM_THEN_SUM, 0), (TWO_GEMMS, 0)])
def test_only_flops_no_rewrite_can_remove_make_the_floor(tmp_path, source, floor):
    """A GEMM whose output is the model's (elementwise after it) must be done; two GEMMs may be merged into one
    and a GEMM before a reduction folded into a smaller one, so their FLOPs bound nothing."""
    from evaluators.judge import build_reference
    from evaluators.profile import problem_cost

    path = tmp_path / f"p{abs(hash(source))}.py"
    path.write_text(source)
    cost = problem_cost(build_reference(str(path), "default", "cpu", 1), tmp_path)
    assert cost["flops"] >= 2 * 64 * 256 * 256
    assert cost["floor_flops"] == floor, cost["floor_flops_why"]
    assert (tmp_path / f"cost-{build_reference(str(path), 'default', 'cpu', 1).info.source_hash}-default-cpu.json"
            ).is_file()


def test_a_gemm_faster_than_the_peak_allows_is_held_as_suspect(tmp_path, kswarm_cache_dir, monkeypatch):
    """A real benchmark of an honest GEMM candidate on a machine model whose bandwidth is endless but whose compute
    is slower than this CPU: only the FLOPs can flag it, and they do (the candidate's time under-reports the work a
    GEMM must do on such a machine)."""
    from evaluators import timing_result
    from evaluators.machines import MachineModel
    from evaluators.pipeline import evaluate
    from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy
    from evaluators.result import Status

    problem = tmp_path / "gemm.py"
    problem.write_text(GEMM)
    candidate = GEMM.replace("class Model(", "class ModelNew(").replace(
        "torch.relu(self.fc(x))", "torch.clamp_min(torch.addmm(self.fc.bias, x, self.fc.weight.t()), 0.0)")
    # 1 MFLOP/s: 8.4 MFLOP take 8.4 s there; bytes are free
    monkeypatch.setattr(timing_result, "machine_model", lambda hw: MachineModel(hw, {"float32": 1e-6}, 1e12, 1 << 20))
    result = evaluate(EvalRequest(problem_path=str(problem), candidate_source=candidate, device="cpu", mode="bench",
                                  verify=VerifyPolicy(seed=3), cache_dir=str(kswarm_cache_dir),
                                  timing=TimingPolicy(baselines=("eager",), time_cap_s=0.5)))
    assert result.status is Status.SUSPECT_SPEEDUP, result.reason
    assert "FLOPs" in result.reason and result.profile["floor_bound"] == "compute"
    assert result.candidate.ci_high_ms < result.profile["floor_ms"]
