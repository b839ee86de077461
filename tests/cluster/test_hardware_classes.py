"""Mapping from what detection finds to hardware classes and Ray resources (no hardware needed)."""
import pytest

from cluster import hardware as hw


@pytest.mark.parametrize("name,cc,cls", [
    ("NVIDIA H200", (9, 0), "h200"),
    ("NVIDIA H100 80GB HBM3", (9, 0), "h100"),
    ("NVIDIA H100 PCIe", (9, 0), "h100"),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", (12, 0), "rtx6000-blackwell"),
    ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", (12, 0), "rtx6000-blackwell"),
    ("NVIDIA A100-SXM4-80GB", (8, 0), "a100"),
    ("NVIDIA L40S", (8, 9), "l40s"),
    ("NVIDIA L40", (8, 9), "cuda-sm89"),
    ("NVIDIA RTX 6000 Ada Generation", (8, 9), "cuda-sm89"),
    ("NVIDIA GH200 480GB", (9, 0), "cuda-sm90"),
    ("Tesla T4", (7, 5), "cuda-sm75"),
])
def test_cuda_names_map_to_classes(name, cc, cls):
    assert hw.cuda_class(name, *cc) == cls


@pytest.mark.parametrize("brand,cls", [
    ("Apple M4", "m4"), ("Apple M4 Pro", "m4"), ("Apple M4 Max", "m4"), ("Apple M1", "m1"),
    ("Apple M3 Ultra", "m3"), ("Apple Silicon X", "silicon-x"),
])
def test_apple_chips_map_to_their_generation(brand, cls):
    assert hw.apple_class(brand) == cls


def test_cpu_isa_is_read_from_flags():
    assert hw.cpu_isa({"sse4_2", "avx2", "avx512f", "avx512bw", "amx_tile", "amx_bf16"}, "x86_64") == (
        "avx2", "avx512", "amx")
    assert hw.cpu_isa({"fp", "asimd"}, "aarch64") == ("neon",)
    assert hw.cpu_isa(set(), "arm64") == ("neon",)
    assert hw.cpu_isa({"sse2"}, "x86_64") == ()


def test_cpuinfo_and_nvidia_smi_are_parsed():
    model, flags = hw.parse_cpuinfo("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
                                    "flags\t\t: fpu avx2 avx512f amx_tile\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert model == "Intel(R) Xeon(R) Platinum 8480+" and {"avx2", "amx_tile"} <= flags
    probes = hw.parse_nvidia_smi("NVIDIA H200, 9.0, 143771\nNVIDIA H200, 9.0, 143771\n")
    assert probes == (hw.CudaProbe("NVIDIA H200", 9, 0, 143771),) * 2


def test_a_node_gets_one_unit_per_device_and_always_a_cpu():
    probe = hw.Probe(
        cpu=hw.CpuProbe(model="AMD EPYC 9654", machine="x86_64", flags=frozenset({"avx2", "avx512f"})),
        cuda=(hw.CudaProbe("NVIDIA H200", 9, 0),) * 2 + (hw.CudaProbe("NVIDIA L40S", 8, 9),))
    devices = hw.devices_from_probe(probe)
    assert [d.hw_class for d in devices] == ["h200", "h200", "l40s", "cpu"]
    assert hw.hardware_resources(devices) == {"hw:h200": 2.0, "hw:l40s": 1.0, "hw:cpu": 1.0}
    assert hw.num_cuda(devices) == 3
    cpu = devices[-1]
    assert cpu.provenance["cpu_model"] == "AMD EPYC 9654" and cpu.provenance["isa"] == ["avx2", "avx512"]


def test_a_mac_offers_its_chip_and_its_cpu():
    probe = hw.Probe(cpu=hw.CpuProbe(model="Apple M4 Pro", machine="arm64"), apple_chip="Apple M4 Pro")
    devices = hw.devices_from_probe(probe)
    assert [(d.hw_class, d.kind) for d in devices] == [("m4", "mps"), ("cpu", "cpu")]
    assert devices[1].provenance["isa"] == ["neon"]


def test_device_kind_of_a_class():
    assert hw.device_kind("h200") == "cuda"
    assert hw.device_kind("cuda-sm89") == "cuda"
    assert hw.device_kind("m4") == "mps"
    assert hw.device_kind("cpu") == "cpu"
    with pytest.raises(ValueError, match="unknown hardware class 'tpu'"):
        hw.device_kind("tpu")


def test_detection_on_this_machine_finds_a_cpu():
    devices = hw.detect_devices()
    assert devices[-1].hw_class == "cpu" and devices[-1].name


def test_one_hardware_module_without_ray_serves_evaluators_and_proposers():
    import subprocess
    import sys

    from evaluators import hardware as ev_hw
    from proposers import base
    assert base.device_kind is ev_hw.device_kind is hw.device_kind
    assert hw.device_kind("mps") == "mps"
    code = ("import sys, evaluators.pipeline, evaluators.machines, proposers.base, search.scheduler, "
            "search.local_dispatch, search.campaign; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('cluster', 'ray')); "
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
