"""Machine models read from ``machine_specs.toml``: the figures prompts and profiles use for a hardware class.

``machine_spec(hardware, cores=..., device_name=...)`` gives one ``MachineSpec``. A CPU class is a generic x86 or
ARM core scaled to the cores the evaluation is given (not the host's); an Apple class names a generation, and the
device name (``Apple M4 Max``) picks the chip when it is known. ``describe`` is the model as prompt text.
"""
from __future__ import annotations

import dataclasses
import functools
import platform
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10
    import tomli as tomllib

DATA = Path(__file__).with_name("machine_specs.toml")


@dataclasses.dataclass(frozen=True)
class MachineSpec:
    hardware: str
    name: str
    vector_tflops: dict[str, float]
    tensor_tflops: dict[str, float]
    mem_bandwidth_gbs: float
    l2_bytes: int
    sm_count: int = 0
    cores: int = 0                                  # CPU cores counted (0 for a GPU)
    l1_shared_per_sm_bytes: int = 0
    shared_per_block_max_bytes: int = 0
    registers_per_sm: int = 0
    features: tuple[str, ...] = ()
    measured: dict[str, float] = dataclasses.field(default_factory=dict)
    estimates: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def peak_tflops(self, dtype: str = "float32", *, tensor: bool | None = None) -> float:
        """The compute ceiling for ``dtype``. ``tensor=None`` picks the matrix units for the reduced precisions; for
        float32 it is the faster way to float32 accuracy: the vector units, or the matrix units' TF32 in three
        passes (3xTF32, whose error stays at float32's level; PyTorch's own float32 matmuls use the vector units)."""
        if tensor is None and dtype == "float32" and self.tensor_tflops.get("tf32"):
            return max(self.vector_tflops.get("float32") or 0.0, self.tensor_tflops["tf32"] / 3)
        use_tensor = tensor if tensor is not None else dtype not in ("float32", "float64")
        table = self.tensor_tflops if use_tensor else self.vector_tflops
        return table.get(dtype) or self.vector_tflops.get(dtype) or max(self.vector_tflops.values())

    def floor_seconds(self, flops: float, bytes_moved: float, dtype: str = "float32") -> dict[str, float]:
        """The roofline floors: compute (FLOPs at peak), memory (bytes at peak bandwidth), and the larger."""
        compute = flops / (self.peak_tflops(dtype) * 1e12) if flops else 0.0
        memory = bytes_moved / (self.mem_bandwidth_gbs * 1e9) if bytes_moved else 0.0
        return {"compute_s": compute, "memory_s": memory, "floor_s": max(compute, memory)}

    def ridge_flops_per_byte(self, dtype: str = "float32") -> float:
        """The arithmetic intensity where compute and memory floors meet."""
        return self.peak_tflops(dtype) * 1e12 / (self.mem_bandwidth_gbs * 1e9)


@functools.cache
def _data() -> dict[str, Any]:
    return tomllib.loads(DATA.read_text())


def known_classes() -> tuple[str, ...]:
    return tuple(sorted(_data()["models"])) + ("cpu",)


def _from_table(hardware: str, t: dict[str, Any], **extra: Any) -> MachineSpec:
    names = {f.name for f in dataclasses.fields(MachineSpec)}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in t.items() if k in names}
    return MachineSpec(hardware=hardware, **{**kw, **extra})


def _cpu(cores: int, arch: str) -> MachineSpec:
    t = _data()["cpus"]["arm" if arch.lower() in ("arm64", "aarch64") else "x86"]
    per = t["vector_gflops_per_core"]
    rates = {k: v * cores / 1e3 for k, v in per.items()}
    return MachineSpec(
        hardware="cpu", name=f"{cores} x {t['name']}", vector_tflops=rates, tensor_tflops={}, cores=cores,
        mem_bandwidth_gbs=min(t["socket_bandwidth_gbs"], t["bandwidth_per_core_gbs"] * cores),
        l2_bytes=t["l2_per_core_bytes"] * cores, l1_shared_per_sm_bytes=t["l1d_per_core_bytes"],
        features=tuple(t["features"]), estimates=tuple(t.get("estimates", ())), sources=tuple(t["sources"]),
        measured={"l3_bytes": float(t["l3_per_core_bytes"] * cores)})


def machine_spec(hardware: str, *, cores: int = 1, device_name: str = "", arch: str | None = None) -> MachineSpec | None:
    """The model of ``hardware``; None for a class the data does not describe (e.g. ``cuda-sm100``)."""
    if hardware == "cpu" or hardware.startswith("cpu"):
        return _cpu(max(1, int(cores)), arch or platform.machine())
    models = _data()["models"]
    name = hardware
    if device_name and hardware in models:             # an Apple generation: the chip from the device name
        for suffix in ("max", "pro"):
            if suffix in device_name.lower().split() and f"{hardware}-{suffix}" in models:
                name = f"{hardware}-{suffix}"
    if name not in models:
        return None
    return _from_table(hardware, models[name])


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.0f} {unit}"
    return f"{n:.0f} B"


def describe(spec: MachineSpec | None, hardware: str = "") -> str:
    """The machine model as a few lines of prompt text."""
    if spec is None:
        return f"Hardware class {hardware!r}: no machine model on file; assume a recent device of that class."
    lines = [f"Hardware class {spec.hardware!r}: {spec.name}."]
    rates = ", ".join(f"{k} {v:g}" for k, v in spec.vector_tflops.items())
    lines.append(f"- peak without matrix units (TFLOP/s): {rates}")
    if spec.tensor_tflops:
        lines.append("- peak with matrix units (TFLOP/s, dense): "
                     + ", ".join(f"{k} {v:g}" for k, v in spec.tensor_tflops.items()))
    lines.append(f"- memory bandwidth: {spec.mem_bandwidth_gbs:g} GB/s; ridge point (float32): "
                 f"{spec.ridge_flops_per_byte():.1f} FLOP/byte")
    if spec.cores:
        lines.append(f"- {spec.cores} cores given to the evaluation; L1d {_size(spec.l1_shared_per_sm_bytes)} per "
                     f"core, L2 {_size(spec.l2_bytes)} in all, L3 about {_size(spec.measured.get('l3_bytes', 0))}")
    else:
        lines.append(f"- {spec.sm_count} SMs/cores; L2 {_size(spec.l2_bytes)}; L1+shared "
                     f"{_size(spec.l1_shared_per_sm_bytes)} per SM, at most {_size(spec.shared_per_block_max_bytes)}"
                     " shared per block" + (f"; {spec.registers_per_sm} 32-bit registers per SM"
                                            if spec.registers_per_sm else ""))
    if spec.features:
        lines.append("- features: " + ", ".join(spec.features))
    if spec.measured and not spec.cores:
        lines.append("- measured here: " + ", ".join(f"{k} {_size(v) if k.endswith('bytes') else f'{v:g}'}"
                                                     for k, v in spec.measured.items()))
    return "\n".join(lines)
