"""The message format between the trusted parent and the sandboxed child.

A frame is a JSON header plus raw tensor bytes. Nothing is unpickled: a child that runs hostile code can send
wrong values, but never code. Tensors travel as (dtype, shape, bytes) and are rebuilt with ``torch.frombuffer``.
"""
from __future__ import annotations

import json
import os
import select
import struct
import threading
import time
from typing import Any

import torch

_LEN = struct.Struct("<Q")
# What one frame may hold, whatever ``max_bytes`` a caller allows for tensor bytes. An honest header is a few KB
# (a tensor's entry is about 60 bytes and two JSON containers). These bound what parsing a hostile header costs:
# Python objects take many times their JSON text, containers most of all, and each blob is a tensor.
MAX_HEADER_BYTES = 4 << 20
MAX_BLOBS = 1 << 14
MAX_CONTAINERS = 8 * MAX_BLOBS
_DTYPES = {str(d): d for d in (
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.uint8, torch.int16,
    torch.int32, torch.int64, torch.bool, torch.complex64, torch.complex128)}


class WireError(Exception):
    """The peer sent something that is not a valid frame, or closed the pipe."""


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    t = t.detach().to("cpu").resolve_conj().resolve_neg().contiguous()
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())


def pack(obj: Any, blobs: list[Any]) -> Any:
    """Turn a tree of JSON values, tuples and tensors into JSON; tensor bytes are appended to ``blobs``."""
    if isinstance(obj, torch.Tensor):
        blobs.append(_tensor_bytes(obj))
        return {"__t__": len(blobs) - 1, "dtype": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(x, blobs) for x in obj]}
    if isinstance(obj, list):
        return [pack(x, blobs) for x in obj]
    if isinstance(obj, dict):
        return {"__dict__": [[str(k), pack(v, blobs)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot send a {type(obj).__name__}")


def unpack(obj: Any, blobs: list[torch.Tensor], used: set[int] | None = None) -> Any:
    """Rebuild what ``pack`` sent. Each blob backs one tensor at most: tensors that shared memory in the parent
    would let one output be changed through another."""
    used = set() if used is None else used
    if isinstance(obj, list):
        return [unpack(x, blobs, used) for x in obj]
    if isinstance(obj, dict):
        if "__t__" in obj:
            dtype = _DTYPES.get(obj["dtype"]) if isinstance(obj["dtype"], str) else None
            if dtype is None:
                raise WireError(f"unsupported dtype {obj['dtype']!r}")
            shape = obj["shape"]
            if not isinstance(shape, list) or not all(type(s) is int and 0 <= s < 1 << 48 for s in shape):
                raise WireError("tensor shape must be a list of non-negative integers")
            index = obj["__t__"]
            if type(index) is not int or not 0 <= index < len(blobs):
                raise WireError("tensor refers to a blob that is not in the frame")
            if index in used:
                raise WireError("two tensors of the frame refer to the same blob")
            used.add(index)
            flat = blobs[index]
            n = 1
            for s in shape:
                n *= s
            if flat.numel() != n * torch.empty((), dtype=dtype).element_size():
                raise WireError("tensor byte count does not match its shape and dtype")
            return flat.view(dtype).reshape(shape)
        if "__tuple__" in obj:
            return tuple(unpack(x, blobs, used) for x in obj["__tuple__"])
        if "__dict__" in obj:
            return {k: unpack(v, blobs, used) for k, v in obj["__dict__"]}
        raise WireError("unknown object in frame")
    return obj


PIPE_BYTES = 1 << 20       # Linux's default pipe-max-size: 16 times fewer wake-ups per GB than the 64 KiB default


def pipe() -> tuple[int, int]:
    """``os.pipe()`` with its buffer raised to ``PIPE_BYTES`` where the kernel allows it: a checked call's outputs
    (gigabytes at KernelBench's sizes) cross it in 16 times fewer reads and writes. Left at the default where the
    kernel refuses (an unprivileged process above pipe-max-size) or has no such setting."""
    r, w = os.pipe()
    try:
        import fcntl
        fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (OSError, ImportError):
        pass
    return r, w


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def send(fd: int, kind: str, payload: Any = None) -> None:
    blobs: list[Any] = []
    header = json.dumps({"kind": kind, "payload": pack(payload, blobs),
                         "sizes": [len(b) for b in blobs]}).encode()
    _write_all(fd, _LEN.pack(len(header)) + header)
    for b in blobs:
        _write_all(fd, b)


class WireTimeout(WireError):
    """No complete frame arrived before the deadline."""


def _read_exact(fd: int, n: int, deadline: float | None = None, into: Any = None) -> Any:
    buf = bytearray(n) if into is None else into
    view = memoryview(buf if into is None else into.numpy()).cast("B")
    got = 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise WireTimeout("no answer before the deadline")
        chunk = os.readv(fd, [view[got:]])
        if chunk == 0:
            raise WireError("peer closed the pipe")
        got += chunk
    return buf


def recv(fd: int, max_bytes: int = 1 << 36, deadline: float | None = None,
         device: str | None = None) -> tuple[str, Any]:
    """Read one frame. ``max_bytes`` bounds what an untrusted peer can make us allocate; ``deadline`` is a
    ``time.monotonic()`` value after which WireTimeout is raised. With a CUDA ``device``, each blob of at least
    ``STREAM_MIN_BYTES`` is streamed to that device through a small reused host buffer instead of landing in host
    memory: no gigabytes of fresh host pages to fault in, and no second copy on the way to the comparison."""
    (hlen,) = _LEN.unpack(_read_exact(fd, _LEN.size, deadline))
    if hlen > MAX_HEADER_BYTES:
        raise WireError(f"frame header of {hlen} bytes, over the limit of {MAX_HEADER_BYTES}")
    text = _read_exact(fd, hlen, deadline)
    if text.count(b"[") + text.count(b"{") > MAX_CONTAINERS:
        raise WireError(f"frame header with more than {MAX_CONTAINERS} lists and objects")
    try:
        header = json.loads(text)
        raw_sizes = header["sizes"]
        if not isinstance(raw_sizes, list) or len(raw_sizes) > MAX_BLOBS:
            raise ValueError(f"sizes must be a list of at most {MAX_BLOBS} blob sizes")
        sizes = [int(s) for s in raw_sizes]
        kind = str(header["kind"])
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as e:
        raise WireError(f"malformed frame header: {type(e).__name__}: {str(e)[:200]}") from None
    if sum(sizes) > max_bytes or any(s < 0 for s in sizes):
        raise WireError("frame larger than allowed")
    # each blob is read straight into the tensor that will hold it: no intermediate copies
    to_device = device is not None and torch.device(device).type == "cuda"
    blobs = [_read_to_device(fd, s, deadline, device) if to_device and s >= STREAM_MIN_BYTES
             else _read_exact(fd, s, deadline, into=_blob(s)) for s in sizes]
    try:
        return kind, unpack(header["payload"], blobs)
    except WireError:
        raise
    except (IndexError, KeyError, ValueError, TypeError, RuntimeError, OverflowError, AttributeError,
            RecursionError) as e:
        # whatever a hostile peer puts in a frame ends as a protocol error, never as an exception of ours
        raise WireError(f"malformed frame payload: {type(e).__name__}") from None


STREAM_MIN_BYTES = 16 << 20      # a blob this large goes to the device in chunks (recv with a CUDA device)
STAGE_BYTES = 64 << 20           # each receiving thread's reused host buffer for those chunks
_STAGE = threading.local()


def _stage() -> torch.Tensor:
    """This thread's host buffer for streaming blobs to a device: page-locked where CUDA allows it (the copy to the
    device then runs at the bus's speed), allocated once and reused, so its pages are faulted in once."""
    buf = getattr(_STAGE, "buf", None)
    if buf is None:
        try:
            buf = torch.empty(STAGE_BYTES, dtype=torch.uint8, pin_memory=True)
        except RuntimeError:            # no page-locked memory to be had: an ordinary buffer, still reused
            buf = torch.empty(STAGE_BYTES, dtype=torch.uint8)
        _STAGE.buf = buf
    return buf


def _read_to_device(fd: int, size: int, deadline: float | None, device: str) -> torch.Tensor:
    try:
        out = torch.empty(size, dtype=torch.uint8, device=device)
    except (RuntimeError, MemoryError):   # torch.OutOfMemoryError is a RuntimeError
        raise WireError(f"cannot allocate a blob of {size} bytes on {device} for the frame") from None
    stage = _stage()
    done = 0
    while done < size:
        n = min(STAGE_BYTES, size - done)
        _read_exact(fd, n, deadline, into=stage[:n])
        out[done:done + n].copy_(stage[:n])     # synchronous: the buffer is free again when it returns
        done += n
    return out


def _blob(size: int) -> torch.Tensor:
    try:
        return torch.empty(size, dtype=torch.uint8)
    except (RuntimeError, MemoryError):   # within max_bytes, and still more than this host can give
        raise WireError(f"cannot allocate a blob of {size} bytes for the frame") from None
