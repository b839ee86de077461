"""Hardware classes, device kinds and probes: the one place that names hardware. No Ray here (``cluster.hardware``
adds the Ray resources on top).

A hardware class (``h100``, ``h200``, ``rtx6000-blackwell``, ``m4``, ``cpu``, ...) names what a candidate is tuned
for; its device kind (``cuda``, ``mps``, ``cpu``) is the torch device that evaluates it.

Detection (``probe_*``) talks to the machine; the mapping from what was probed to a class (``cuda_class``,
``apple_class``, ``cpu_isa``, ``devices_from_probe``) is pure, so it is tested without the hardware.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import platform
import re
import shutil
import subprocess
from typing import Any, Literal, Mapping, Sequence

logger = logging.getLogger(__name__)

# Checked in order; the first pattern found in the device name wins. Word boundaries keep "GH200" (a Grace Hopper
# superchip) and "L40" (not the S) out of the named classes: they fall through to the generic class.
_CUDA_CLASSES: tuple[tuple[str, str], ...] = (
    (r"\bH200\b", "h200"),
    (r"\bH100\b", "h100"),
    (r"\bRTX\b.*\b6000\b.*\bBlackwell\b", "rtx6000-blackwell"),
    (r"\bA100\b", "a100"),
    (r"\bL40S\b", "l40s"),
)
NAMED_CUDA_CLASSES = frozenset(cls for _, cls in _CUDA_CLASSES)

DeviceKind = Literal["cuda", "mps", "cpu"]


@dataclasses.dataclass(frozen=True)
class CudaProbe:
    """What the driver says about one CUDA device."""

    name: str
    major: int
    minor: int
    memory_mb: int | None = None


@dataclasses.dataclass(frozen=True)
class CpuProbe:
    """What the OS says about the host CPU. ``flags`` are /proc/cpuinfo flags (or the sysctl features on macOS)."""

    model: str
    machine: str                      # platform.machine(): x86_64, aarch64, arm64
    flags: frozenset[str] = frozenset()
    logical_cores: int | None = None


@dataclasses.dataclass(frozen=True)
class Probe:
    """Everything detection found on one node."""

    cpu: CpuProbe
    cuda: tuple[CudaProbe, ...] = ()
    apple_chip: str | None = None     # sysctl machdep.cpu.brand_string when MPS is available, e.g. "Apple M4"


@dataclasses.dataclass(frozen=True)
class Device:
    """One device of a node and its hardware class."""

    hw_class: str
    kind: DeviceKind
    index: int
    name: str
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def slug(text: str) -> str:
    """Lower-case, with runs of anything but letters and digits turned into single dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def named_cuda_class(name: str) -> str | None:
    """The named class a CUDA device's name belongs to, or None for a device of the generic ``cuda-smXY`` class."""
    for pattern, cls in _CUDA_CLASSES:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return cls
    return None


def cuda_class(name: str, major: int, minor: int) -> str:
    """Hardware class of a CUDA device from its name and compute capability."""
    return named_cuda_class(name) or f"cuda-sm{major}{minor}"


def apple_class(brand: str) -> str:
    """Hardware class of an Apple GPU from the chip's brand string: "Apple M4 Pro" -> ``m4``.

    The class is the chip generation; the variant (Pro, Max, Ultra) is kept in the provenance. An unrecognised brand
    becomes its slug.
    """
    m = re.search(r"\bM(\d+)\b", brand)
    if m:
        return f"m{m.group(1)}"
    s = slug(brand.replace("Apple", ""))
    return s or "mps"


def cpu_isa(flags: frozenset[str] | set[str], machine: str) -> tuple[str, ...]:
    """The vector ISA extensions that matter for kernels: avx2, avx512, amx, neon."""
    isa = []
    if "avx2" in flags:
        isa.append("avx2")
    if any(f.startswith("avx512") for f in flags):
        isa.append("avx512")
    if any(f.startswith("amx") for f in flags):
        isa.append("amx")
    if machine.lower() in ("arm64", "aarch64") or "asimd" in flags or "neon" in flags:
        isa.append("neon")
    return tuple(isa)


def is_cuda_class(hw_class: str) -> bool:
    return hw_class in NAMED_CUDA_CLASSES or hw_class.startswith("cuda-")


def is_apple_class(hw_class: str) -> bool:
    """An Apple GPU's class: its chip generation (``m4``), or ``mps`` where the chip was not recognised."""
    return re.fullmatch(r"m\d+", hw_class) is not None or hw_class == "mps"


def device_kind(hw_class: str) -> DeviceKind:
    """The torch device kind that evaluates ``hw_class`` ("cuda", "mps" or "cpu")."""
    if is_cuda_class(hw_class):
        return "cuda"
    if is_apple_class(hw_class):
        return "mps"
    if hw_class == "cpu":
        return "cpu"
    raise ValueError(f"unknown hardware class {hw_class!r}: expected cpu, m<N>, cuda-sm<XY> or one of "
                     f"{', '.join(sorted(NAMED_CUDA_CLASSES))}")


def cpu_device(cpu: CpuProbe) -> Device:
    isa = cpu_isa(cpu.flags, cpu.machine)
    return Device(hw_class="cpu", kind="cpu", index=0, name=cpu.model, provenance={
        "cpu_model": cpu.model, "machine": cpu.machine, "isa": list(isa), "logical_cores": cpu.logical_cores})


def devices_from_probe(probe: Probe) -> list[Device]:
    """The devices of a node: every CUDA device, the Apple GPU, and always the CPU (last)."""
    devices = [
        Device(hw_class=cuda_class(c.name, c.major, c.minor), kind="cuda", index=i, name=c.name,
               provenance={"compute_capability": f"{c.major}.{c.minor}", "memory_mb": c.memory_mb})
        for i, c in enumerate(probe.cuda)
    ]
    if probe.apple_chip:
        devices.append(Device(hw_class=apple_class(probe.apple_chip), kind="mps", index=0, name=probe.apple_chip,
                              provenance={"chip": probe.apple_chip}))
    devices.append(cpu_device(probe.cpu))
    return devices


def num_cuda(devices: Sequence[Device]) -> int:
    return sum(1 for d in devices if d.kind == "cuda")


# --- detection: everything below touches the machine ---------------------------------------------------------

def run_tool(cmd: Sequence[str], timeout: float = 10.0) -> str | None:
    """A system tool's standard output, or None where it is missing, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.debug("%s failed: %s", cmd[0], exc)
        return None
    return out.stdout if out.returncode == 0 else None


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """Model name and flags of the first processor in a /proc/cpuinfo text."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def probe_cpu() -> CpuProbe:
    machine = platform.machine()
    model, flags = "", frozenset()
    if platform.system() == "Darwin":
        model = (run_tool(["sysctl", "-n", "machdep.cpu.brand_string"]) or "").strip()
        feats = (run_tool(["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"]) or "").lower()
        flags = frozenset(feats.replace(".", "_").split())
    else:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                model, flags = parse_cpuinfo(f.read())
        except OSError:
            pass
    return CpuProbe(model=model or platform.processor() or machine, machine=machine, flags=flags,
                    logical_cores=os.cpu_count())


def parse_nvidia_smi(text: str) -> tuple[CudaProbe, ...]:
    """Parse ``nvidia-smi --query-gpu=name,compute_cap,memory.total --format=csv,noheader,nounits``."""
    out = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or "." not in parts[1]:
            continue
        major, minor = parts[1].split(".", 1)
        mem = int(float(parts[2])) if len(parts) > 2 and re.fullmatch(r"[\d.]+", parts[2]) else None
        out.append(CudaProbe(name=parts[0], major=int(major), minor=int(minor), memory_mb=mem))
    return tuple(out)


def probe_cuda() -> tuple[CudaProbe, ...]:
    """Every CUDA device of the machine, from nvidia-smi when present, else from torch.

    nvidia-smi is preferred because it leaves no CUDA context in this process (a node start-up or a driver that
    later forks workers should not hold one).
    """
    text = run_tool(["nvidia-smi", "--query-gpu=name,compute_cap,memory.total", "--format=csv,noheader,nounits"])
    if text:
        found = parse_nvidia_smi(text)
        if found:
            return found
    try:
        import torch
    except ImportError:
        return ()
    if not torch.cuda.is_available():
        return ()
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append(CudaProbe(name=p.name, major=p.major, minor=p.minor, memory_mb=p.total_memory // 2**20))
    return tuple(out)


def probe_apple_chip() -> str | None:
    if platform.system() != "Darwin":
        return None
    try:
        import torch
        if not torch.backends.mps.is_available():
            return None
    except ImportError:
        return None
    return (run_tool(["sysctl", "-n", "machdep.cpu.brand_string"]) or "Apple").strip()


def probe() -> Probe:
    return Probe(cpu=probe_cpu(), cuda=probe_cuda(), apple_chip=probe_apple_chip())


def detect_devices() -> list[Device]:
    """The devices of this node with their classes."""
    devices = devices_from_probe(probe())
    logger.info("detected hardware: %s", ", ".join(f"{d.hw_class} ({d.name})" for d in devices))
    return devices
