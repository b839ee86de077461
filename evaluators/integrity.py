"""What the child watches about itself: replaced functions, changed global settings, stray threads.

The parent treats these reports as evidence, not proof: a candidate that can run code can lie. The defences that
do not depend on the child's honesty (fresh inputs, checks decided after the call, the host clock) live in the
parent.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any

import torch

_WATCHED_TIME = ("perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "time_ns",
                 "process_time", "process_time_ns", "sleep")


def _public_attrs(prefix: str, obj: Any, out: dict[str, int]) -> None:
    # raw namespace entries, not getattr: a classmethod yields a new bound method on every access
    for name, value in list(vars(obj).items()):
        if name.startswith("__") and name not in ("__call__", "__eq__", "__init__"):
            continue
        if callable(value) or isinstance(value, (classmethod, staticmethod, property)):
            out[f"{prefix}.{name}"] = id(value)


def snapshot(extra_modules: tuple[str, ...] = ()) -> dict[str, int]:
    """Identity of every function a judge relies on: timers, syncs, events, comparisons and public torch ops."""
    ids: dict[str, int] = {}
    for name in _WATCHED_TIME:
        ids[f"time.{name}"] = id(getattr(time, name))
    _public_attrs("torch", torch, ids)
    _public_attrs("torch.nn.functional", torch.nn.functional, ids)
    _public_attrs("torch.Tensor", torch.Tensor, ids)
    _public_attrs("torch._C.TensorBase", torch._C.TensorBase, ids)
    _public_attrs("torch.nn.Module", torch.nn.Module, ids)
    _public_attrs("torch.testing", torch.testing, ids)
    _public_attrs("torch.cuda", torch.cuda, ids)
    _public_attrs("torch.cuda.Event", torch.cuda.Event, ids)
    if hasattr(torch, "mps"):
        _public_attrs("torch.mps", torch.mps, ids)
    for mod_name in extra_modules:
        mod = sys.modules.get(mod_name)
        if mod is not None:
            _public_attrs(mod_name, mod, ids)
    return ids


def settle_torch() -> None:
    """Make torch's own lazy patches happen now, before the snapshot: importing dynamo wraps
    ``torch.manual_seed`` and its first compile wraps ``nn.Module.__init__``. Those are torch's, not the
    candidate's, and must not read as tampering."""
    import torch._dynamo  # noqa: F401
    try:
        from torch._dynamo.mutation_guard import install_generation_tagging_init
    except ImportError:  # another torch version: a compile candidate may then read as tampering; say so
        import logging
        logging.getLogger(__name__).warning("cannot pre-install dynamo's Module.__init__ wrapper on torch %s",
                                            torch.__version__)
        return
    install_generation_tagging_init()


def diff(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """Names whose identity changed or that disappeared. New names (lazy submodules) are not tampering."""
    return sorted(k for k, v in before.items() if after.get(k) != v)


def global_settings() -> dict[str, Any]:
    s: dict[str, Any] = {
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "default_dtype": str(torch.get_default_dtype()),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cuda_matmul_allow_fp16_reduced": torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
        "cuda_matmul_allow_bf16_reduced": torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "mkldnn_enabled": torch.backends.mkldnn.enabled,
    }
    return s


# bound when the harness loads, before any candidate code could replace them
_enumerate, _current_frames, _main_thread = threading.enumerate, sys._current_frames, threading.main_thread


def python_threads() -> list[str]:
    return [f"{t.name}:{t.ident}" for t in _enumerate() if t is not _main_thread()]


def threads_in_code_from(path: str, exclude: list[str]) -> list[str]:
    """Threads, other than those named in ``exclude`` (as ``python_threads`` names them), with a frame from the
    file ``path`` on their stack: a worker the candidate started and left running its own code. Threads that
    libraries start (a progress-bar monitor, a compiler's pool) run no candidate code and do not count."""
    frames = _current_frames()
    out = []
    for t in _enumerate():
        name = f"{t.name}:{t.ident}"
        if t is _main_thread() or name in exclude:
            continue
        f = frames.get(t.ident)
        while f is not None and f.f_code.co_filename != path:
            f = f.f_back
        if f is not None:
            out.append(name)
    return sorted(out)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    elif device.startswith("mps"):
        torch.mps.synchronize()


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    from evaluators.machines import cpu_model_name
    return cpu_model_name()           # on a Mac, the chip's brand string, which names its GPU too


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(torch.equal(a.reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8)))


def overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when two tensors share storage (an alias or a view)."""
    if a.device != b.device:
        return False
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and a.untyped_storage().nbytes() > 0
    except RuntimeError:
        return False
