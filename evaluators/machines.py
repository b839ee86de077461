"""Machine models: peak rates, memory bandwidth and cache sizes per hardware class.

Figures are ceilings, used for the roofline (an impossible speedup is flagged) and by proposers. For GPUs they
are datasheet or measured figures; for a CPU they are generous upper bounds derived from the core count, so that
an honest kernel is never flagged.
"""
from __future__ import annotations

import dataclasses
import functools
import os

from evaluators.hardware import apple_class, cuda_class, named_cuda_class, probe_cpu, run_tool


@dataclasses.dataclass(frozen=True)
class MachineModel:
    hardware: str
    peak_tflops: dict[str, float]          # dtype -> dense TFLOP/s
    mem_bandwidth_gbs: float
    l2_bytes: int
    sm_count: int = 0
    features: tuple[str, ...] = ()

    def floor_seconds(self, flops: float, bytes_moved: float, dtype: str = "float32") -> float:
        """The roofline floor: no implementation can run faster than this. A float32 problem may run on TF32
        units where its tolerance allows, so its peak is the faster of the two."""
        peak = self.peak_tflops.get(dtype, max(self.peak_tflops.values()))
        if dtype == "float32":
            peak = max(peak, self.peak_tflops.get("tf32", 0.0))
        peak *= 1e12
        return max(flops / peak if peak else 0.0, bytes_moved / (self.mem_bandwidth_gbs * 1e9))


@functools.cache
def cpu_model_name() -> str:
    """The host CPU's model, as the cluster reads it (on a Mac, the chip's brand string: "Apple M4 Max")."""
    return probe_cpu().model


@functools.cache
def nvidia_driver_version() -> str | None:
    """The NVIDIA driver's version from ``nvidia-smi``, once per process; None where there is none."""
    text = run_tool(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    lines = text.strip().splitlines() if text else []
    return lines[0] if lines else None


def _cpu_model() -> MachineModel:
    cores = os.cpu_count() or 1
    # 2 FMA units x 16 fp32 lanes x 2 flops x 4 GHz per core: above any x86 core today
    peak = cores * 2 * 16 * 2 * 4.0e9 / 1e12
    return MachineModel("cpu", {"float32": peak, "bfloat16": 2 * peak, "float16": 2 * peak},
                        mem_bandwidth_gbs=max(100.0, 25.0 * cores), l2_bytes=32 << 20)


_MODELS = {
    "h100": MachineModel("h100", {"float32": 67, "tf32": 495, "bfloat16": 990, "float16": 990},
                         3350, 50 << 20, 132, ("wgmma", "tma", "fp8")),
    "h200": MachineModel("h200", {"float32": 67, "tf32": 495, "bfloat16": 990, "float16": 990},
                         4800, 50 << 20, 132, ("wgmma", "tma", "fp8")),
    "rtx6000-blackwell": MachineModel("rtx6000-blackwell", {"float32": 126, "bfloat16": 504, "float16": 504},
                                      1790, 128 << 20, 188, ("fp4", "fp8")),
    "a100": MachineModel("a100", {"float32": 19.5, "tf32": 156, "bfloat16": 312, "float16": 312},
                         2039, 40 << 20, 108),
    "l40s": MachineModel("l40s", {"float32": 91.6, "bfloat16": 362, "float16": 362}, 864, 96 << 20, 142),
}
# An Apple class is a chip generation, from the base chip to the Max and Ultra: its ceilings are those of the
# generation's largest chip (M1 and M2 Ultra 800 GB/s, M3 Ultra 819 GB/s, M4 Max 546 GB/s), so that an honest kernel
# on a Max is never held below a base chip's floor.
for _gen, _tflops, _gbs in (("m1", 21.0, 800), ("m2", 27.2, 800), ("m3", 28.4, 819), ("m4", 18.4, 546)):
    _MODELS[_gen] = MachineModel(_gen, {"float32": _tflops, "float16": _tflops, "bfloat16": _tflops}, _gbs, 96 << 20)


def machine_model(hardware: str) -> MachineModel:
    """The model for a hardware class; an unknown class (``cuda-smXY``, a later Apple generation) gets ceilings
    above any device made so far (twice a B200's bandwidth), so that nothing honest on it is flagged."""
    if hardware == "cpu":
        return _cpu_model()
    if hardware in _MODELS:
        return _MODELS[hardware]
    return MachineModel(hardware, {"float32": 500, "tf32": 5000, "bfloat16": 5000, "float16": 5000}, 16000,
                        256 << 20)


def hardware_class(device: str, device_name: str) -> str:
    """The hardware class of a device, as the cluster names it (``cluster.hardware``): ``cpu``, an Apple
    generation such as ``m4``, a named CUDA class such as ``h200``, or ``cuda-smXY``."""
    kind = device.split(":")[0]
    if kind == "cpu":
        return "cpu"
    if kind == "mps":
        return apple_class(device_name)
    named = named_cuda_class(device_name)
    if named is not None:
        return named                    # without asking the driver for the capability
    try:
        import torch
        return cuda_class(device_name, *torch.cuda.get_device_capability(device))
    except Exception:
        return "cuda"

