"""Hardware classes as Ray resources: each device on a node adds one unit of the custom resource ``hw:<class>``.

The classes themselves, device kinds and probes live in ``evaluators.hardware`` (no Ray there); the names are
re-exported here for the cluster's callers.
"""
from __future__ import annotations

from collections.abc import Sequence

from evaluators.hardware import (NAMED_CUDA_CLASSES, CpuProbe, CudaProbe, Device, DeviceKind, Probe,  # noqa: F401
                                 apple_class, cpu_device, cpu_isa, cuda_class, detect_devices, device_kind,
                                 devices_from_probe, is_apple_class, is_cuda_class, named_cuda_class, num_cuda,
                                 parse_cpuinfo, parse_nvidia_smi, probe, probe_apple_chip, probe_cpu, probe_cuda,
                                 run_tool, slug)

RESOURCE_PREFIX = "hw:"


def resource_name(hw_class: str) -> str:
    """The Ray custom resource that pins work to ``hw_class``."""
    return f"{RESOURCE_PREFIX}{hw_class}"


def hardware_resources(devices: Sequence[Device]) -> dict[str, float]:
    """Ray custom resources for ``devices``: one ``hw:<class>`` unit per device."""
    out: dict[str, float] = {}
    for d in devices:
        name = resource_name(d.hw_class)
        out[name] = out.get(name, 0.0) + 1.0
    return out
