"""What each candidate backend needs of a device, so that no proposer offers a kernel its hardware class cannot run.

The needs are torch device types (``cpu``, ``cuda``, ``mps``), read off a hardware class with ``device_kind``.
``cpp`` is C++/OpenMP built on the host; ``triton`` and ``cuda`` (inline CUDA C++ built for the device's -arch)
need an NVIDIA GPU; ``metal`` (``torch.mps.compile_shader``) an Apple GPU. The dispatcher may read the same table.
"""
from __future__ import annotations

from proposers.base import device_kind

BACKEND_NEEDS: dict[str, tuple[str, ...]] = {
    "torch": ("cpu", "cuda", "mps"),
    "compile": ("cpu", "cuda", "mps"),
    "cpp": ("cpu",),
    "triton": ("cuda",),
    "cuda": ("cuda",),
    "metal": ("mps",),
}


def backend_runs(backend: str, hardware: str) -> bool:
    """Whether a candidate of ``backend`` can run on hardware class ``hardware``."""
    try:
        needs = BACKEND_NEEDS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(sorted(BACKEND_NEEDS))}") from None
    return device_kind(hardware) in needs
