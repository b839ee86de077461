"""Machine models are data with their sources, and the roofline of a profile follows from them: every class the
prompts name has peaks with and without matrix units, bandwidth, caches, SMs and features; a CPU counts the cores
the evaluation is given; the floor is the larger of compute and memory, and the fraction is floor over time."""
from __future__ import annotations

import pytest

from evaluators.machine_specs import describe, known_classes, machine_spec
from evaluators.profiling import roofline


@pytest.mark.parametrize("hw", ["h100", "h200", "rtx6000-blackwell", "a100", "l40s", "m4", "m4-pro", "m4-max"])
def test_every_gpu_model_is_complete_and_sourced(hw: str) -> None:
    spec = machine_spec(hw)
    assert spec is not None and hw in known_classes()
    assert spec.vector_tflops["float32"] > 0 and spec.tensor_tflops and spec.mem_bandwidth_gbs > 0
    assert spec.l2_bytes > 0 and spec.sm_count > 0 and spec.shared_per_block_max_bytes > 0 and spec.features
    assert spec.sources and all(len(s) > 10 for s in spec.sources)


def test_features_and_measured_figures() -> None:
    assert {"wgmma", "tma", "fp8"} <= set(machine_spec("h100").features)
    assert machine_spec("h200").l2_bytes == 60 * 2**20 and machine_spec("h200").measured["copy_bandwidth_gbs"] > 0
    assert "fp4" in machine_spec("rtx6000-blackwell").features and "float4" in machine_spec("rtx6000-blackwell").tensor_tflops
    assert any("simdgroup" in f for f in machine_spec("m4").features)
    assert machine_spec("m4", device_name="Apple M4 Max").name.startswith("Apple M4 Max")
    assert machine_spec("cuda-sm100") is None and "no machine model" in describe(None, "cuda-sm100")


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_a_cpu_counts_the_cores_it_is_given(arch: str) -> None:
    one, four = machine_spec("cpu", cores=1, arch=arch), machine_spec("cpu", cores=4, arch=arch)
    assert four.vector_tflops["float32"] == pytest.approx(4 * one.vector_tflops["float32"])
    assert four.mem_bandwidth_gbs == pytest.approx(4 * one.mem_bandwidth_gbs)
    assert "4 cores given" in describe(four)


def test_roofline_floor_is_the_larger_of_compute_and_memory() -> None:
    spec = machine_spec("h100")
    # a float32 matmul of 4096^3: 1.37e11 FLOPs over 2e8 bytes, compute-bound; float32 accuracy is reached
    # fastest by three TF32 passes on the tensor cores (3xTF32), above the vector units' float32 peak
    prof = {"hardware": "h100", "flops": 2 * 4096**3, "bytes": 3 * 4096 * 4096 * 4, "flops_dtype": "float32"}
    line = roofline(prof, median_ms=5.0)
    assert spec.tensor_tflops["tf32"] / 3 > spec.vector_tflops["float32"]
    compute_ms = prof["flops"] / (spec.tensor_tflops["tf32"] / 3 * 1e12) * 1e3
    assert line["bound"] == "compute" and line["floor_ms"] == pytest.approx(compute_ms)
    assert line["fraction_of_floor"] == pytest.approx(compute_ms / 5.0)
    assert line["arithmetic_intensity"] == pytest.approx(prof["flops"] / prof["bytes"])
    # bf16 uses the tensor cores: the compute floor drops below the memory floor of a small-K problem
    half = roofline({**prof, "flops_dtype": "bfloat16", "flops": 2 * 4096 * 4096 * 8}, median_ms=1.0)
    assert half["bound"] == "memory"
    assert half["memory_floor_ms"] == pytest.approx(prof["bytes"] / 3350e9 * 1e3)
    assert roofline({"hardware": "cuda-sm100", "flops": 1, "bytes": 1}, 1.0) == {}


def test_flops_a_rewrite_can_remove_bound_nothing() -> None:
    """A problem whose FLOPs a rewrite may fold away (``floor_flops`` 0: a GEMM before a sum) is bound by its
    bytes only, so a candidate that removed the GEMM is not shown as faster than its floor."""
    prof = {"hardware": "h200", "flops": 2 * 1024 * 8192 * 8192, "floor_flops": 0, "bytes": 1024 * 8192 * 4 * 2,
            "flops_dtype": "float32"}
    line = roofline(prof, median_ms=0.129)
    assert line["bound"] == "memory" and line["compute_floor_ms"] == 0
    assert line["fraction_of_floor"] < 1
