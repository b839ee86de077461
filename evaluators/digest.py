"""Keyed digests of a checked call's inputs: proof that a large input is unchanged without sending it back.

Why: a checked call used to send every input back from the child over a pipe (1-3 GB/s) for a bitwise comparison
in the parent; at KernelBench's GPU sizes that was most of verification and timing (a 4 GB input: 100-200 s, of
which the calls were 0.2 s). An input tensor above ``DIGEST_MIN_BYTES`` now comes back as a placeholder (its shape
and dtype), and once the call's reply is in, the parent sends a fresh random key; the child digests the very tensors
it passed to the candidate under that key, on their device, and the parent digests its own copies (what
``Reference.run`` returned) under the same key. Smaller inputs keep the exact byte comparison.

The digest: the tensor's logical bytes read as int32 words (int16 or uint8 when the byte count is not a multiple of
4), in slices of ``SLICE_WORDS`` words (bounded temporary memory). For every word a ``torch.Generator`` seeded with
the key draws one uniform 64-bit value; its low and its high 32 bits are that word's multipliers in two lanes (fresh
ones for every word: no two positions share one, so a permutation of the words is seen as surely as any other
change). Each lane is the sum of word x multiplier in int64 with wrap-around. Integer arithmetic only: the result
does not depend on the order of the sums, so it is the same in the parent and the child on the same device and
torch version (the generator's stream is what ``make_inputs`` already relies on).

Strength: let delta_i be the change of word i (|delta_i| < 2**32) and j a word where it is nonzero,
delta_j = 2**t * odd with t <= 31. With the other multipliers fixed, a lane misses the change only if
delta_j * m_j = c mod 2**64, i.e. m_j is one given residue mod 2**(64 - t) >= 2**33; m_j takes 2**32 consecutive
values, so at most one of them does: probability <= 2**-32 per lane, 2**-64 for the two lanes (disjoint bits of
the draw, so independent). The candidate learns the key only after its call has returned, so nothing it computes
during the call can aim at it, and every checked call draws a new key.

What the candidate could redirect, and what stops it (the child runs the digest in the same process as candidate
code):
- Python names (``torch.mul``, ``Tensor.sum``): the digest calls methods of ``torch._C.TensorBase`` (an immutable
  type) and ``torch._C.Generator`` bound when this module is imported, before candidate code exists; rebinding
  those names in this module is caught by the function-identity audit (the child lists this module among the
  harness modules it audits).
- ``__torch_function__`` (a subclass swapped in with ``__class__``, a mode left on the stack, a replaced
  ``Tensor.__torch_function__``): the digest runs under ``DisableTorchFunction``.
- The dispatcher (a ``__torch_dispatch__`` mode, a TLS key such as the Python dispatcher, functorch levels, a
  kernel re-registered for an aten op with ``torch.library`` or a C++ extension): ``Guard`` takes the dispatch
  state and the dispatch tables of the aten ops the digest uses when the child starts, and the digest is refused
  (status tampering) if they differ when the key arrives.
- Code run between bytecodes (a trace or profile function): refused likewise.
Not covered: a candidate that still runs code while the digest runs (ctypes or a C extension patching memory, a
signal handler, a finaliser) could forge it, as it could have forged the inputs it sent back whole before; either
forgery needs the original bytes, so it gains nothing over restoring its inputs. Inputs on other devices than the
CPU and CUDA (MPS) are sent back whole as before: the digest is untested there.
"""
from __future__ import annotations

import sys
from typing import Any

import torch

DIGEST_MIN_BYTES = 1 << 20      # inputs above this are digested; at or below it, sent back and compared bytewise
# words per slice, by device type; a slice takes three int64 buffers (draws, high halves, widened words): on a GPU
# 3 x 32 MiB, few launches; on a CPU 3 x 256 KiB, which stay in cache and need no fresh pages (4x faster there)
SLICE_WORDS = {"cpu": 1 << 15, "cuda": 1 << 22}
LANES = 2                       # the low and the high 32 bits of each word's draw
_GOLDEN = 0x9E3779B97F4A7C15

# Bound at import: the child imports this module before any candidate code exists.
_TB = torch._C.TensorBase
_Generator = torch._C.Generator
_DisableTorchFunction = torch._C.DisableTorchFunction
_new_zeros, _new_empty = _TB.new_zeros, _TB.new_empty
_random_, _copy_, _mul_, _add_, _sum = _TB.random_, _TB.copy_, _TB.mul_, _TB.add_, _TB.sum
_and_, _select, _stack = _TB.bitwise_and_, _TB.select, torch._C._VariableFunctions.stack
_HIGH = 1 if sys.byteorder == "little" else 0     # which int32 of an int64 holds its high 32 bits
_view, _reshape, _narrow, _contiguous, _is_contiguous = _TB.view, _TB.reshape, _TB.narrow, _TB.contiguous, \
    _TB.is_contiguous
_numel, _tolist = _TB.numel, _TB.tolist
_fn_modes, _dispatch_modes = torch._C._len_torch_function_stack, torch._C._len_torch_dispatch_stack
_tls_include = torch._C._dispatch_tls_local_include_set
_dump_table = torch._C._dispatch_dump_table
_gettrace, _getprofile = sys.gettrace, sys.getprofile
try:
    from torch._C._functorch import peek_interpreter_stack as _functorch_level
except ImportError:     # a torch without functorch's C module: no transform can be left active
    def _functorch_level() -> None:
        return None

# Every aten op the digest reaches, composite ones and what they decompose into
# (tests/evaluators/test_input_digest_sees_any_change.py traces the digest and holds this list to it).
DIGEST_OPS = ("aten::new_zeros", "aten::new_empty", "aten::empty.memory_format", "aten::zeros", "aten::zero_",
              "aten::fill_.Scalar", "aten::random_.from", "aten::copy_", "aten::mul_.Tensor", "aten::add_.Tensor",
              "aten::sum", "aten::sum.dim_IntList", "aten::bitwise_and_.Scalar", "aten::select.int", "aten::stack",
              "aten::cat", "aten::unsqueeze", "aten::view.dtype", "aten::view", "aten::reshape",
              "aten::_reshape_alias", "aten::_unsafe_view", "aten::narrow", "aten::slice.Tensor", "aten::contiguous",
              "aten::clone", "aten::empty_like", "aten::_local_scalar_dense", "aten::_to_copy", "aten::to.device",
              "aten::to.dtype_layout", "aten::lift_fresh", "aten::alias", "aten::detach")
# the dispatch keys a call on a plain dense tensor can reach, per device type
_KEYS = ("BackendSelect", "Python", "PythonTLSSnapshot", "PythonDispatcher", "PreDispatch", "Functionalize",
         "FuncTorchDynamicLayerFrontMode", "FuncTorchDynamicLayerBackMode", "FuncTorchBatched", "FuncTorchVmapMode",
         "FuncTorchGradWrapper", "ADInplaceOrView", "AutogradOther", "Conjugate", "Negative", "ZeroTensor",
         "Tracer", "Undefined")
_BACKEND_KEYS = {"cpu": ("CPU", "AutogradCPU", "AutocastCPU"), "cuda": ("CUDA", "AutogradCUDA", "AutocastCUDA")}


def digested(x: Any) -> bool:
    """Whether an input is digested (True) or sent back whole: a dense tensor above the threshold on a device
    where the digest is known to work."""
    return (isinstance(x, torch.Tensor) and x.layout == torch.strided and x.device.type in SLICE_WORDS
            and x.numel() * x.element_size() > DIGEST_MIN_BYTES)


def placeholder(x: torch.Tensor) -> dict[str, Any]:
    """What the child sends in place of a digested input: its shape and dtype, compared in the open."""
    return {"digested": True, "shape": list(x.shape), "dtype": str(x.dtype)}


def is_placeholder(a: Any) -> bool:
    return isinstance(a, dict) and a.get("digested") is True


def new_key() -> int:
    """A fresh key, from the OS: never from the evaluation's seeded rng, which a result records."""
    import secrets
    return secrets.randbits(63)


def seed_for(key: int, index: int) -> int:
    """Input ``index``'s generator seed under ``key``: each input its own stream."""
    return (key ^ ((index + 1) * _GOLDEN)) & ((1 << 63) - 1)


def _words(t: torch.Tensor) -> torch.Tensor:
    flat = t if _is_contiguous(t) else _contiguous(t)      # a copy only for a non-contiguous input
    flat = _view(_reshape(flat, (-1,)), torch.uint8)
    n = _numel(flat)
    return _view(flat, torch.int32 if n % 4 == 0 else torch.int16 if n % 2 == 0 else torch.uint8)


def tensor_digest(t: torch.Tensor, seed: int, slice_words: int | None = None) -> list[int]:
    """``LANES`` signed 64-bit integers, a function of ``t``'s logical bytes, ``seed`` and the slice size (by
    default the device type's, which the parent and the child share)."""
    slice_words = slice_words or SLICE_WORDS[t.device.type]
    with _DisableTorchFunction():
        words = _words(t)
        n = _numel(words)
        gen = _Generator(device=t.device)
        gen.manual_seed(seed)
        low = _new_zeros(words, (), dtype=torch.int64)
        high = _new_zeros(words, (), dtype=torch.int64)
        size = 0
        for start in range(0, n, slice_words):
            k = min(slice_words, n - start)
            if k != size:        # the first slice, and the last, shorter one: buffers of its size
                size = k
                draws, wide, up = (_new_empty(words, (size,), dtype=torch.int64) for _ in range(3))
            _random_(draws, -(1 << 63), None, generator=gen)
            _copy_(wide, _narrow(words, 0, start, k))
            # the high 32 bits, signed: [-2**31, 2**31) (a copy of every other int32: a shift is slow on a CPU)
            _copy_(up, _select(_view(_view(draws, torch.int32), (k, 2)), 1, _HIGH))
            _and_(draws, 0xFFFFFFFF)              # the low 32 bits: [0, 2**32)
            _add_(low, _sum(_mul_(draws, wide)))
            _add_(high, _sum(_mul_(up, wide)))
        return _tolist(_stack([low, high]))


def input_digests(inputs: list[Any], key: int) -> list[list[int] | None]:
    """The digest of each digested input under ``key``, None for the others."""
    return [tensor_digest(x, seed_for(key, i)) if digested(x) else None for i, x in enumerate(inputs)]


class Guard:
    """The dispatch state the digest relies on, taken before candidate code exists; ``broken`` says what changed
    since. A change means a call to a torch op could reach code other than torch's own kernels."""

    def __init__(self, device: str):
        self.device_type = torch.device(device).type
        self.include = str(_tls_include())
        self.tables = self._tables()

    def _tables(self) -> dict[str, str]:
        keys = _KEYS + _BACKEND_KEYS.get(self.device_type, ())
        out = {}
        for op in DIGEST_OPS:
            try:
                table = _dump_table(op)
            except RuntimeError:         # an op this torch version does not have
                continue
            out[op] = "\n".join(line for line in table.splitlines() if line.split(":", 1)[0] in keys)
        return out

    def broken(self) -> str | None:
        if _fn_modes() or _dispatch_modes():
            return (f"a torch function or dispatch mode was left active ({_fn_modes()} function, {_dispatch_modes()} "
                    "dispatch)")
        if _gettrace() is not None or _getprofile() is not None:
            return "a trace or profile function was left set (sys.settrace / sys.setprofile)"
        if str(_tls_include()) != self.include:
            return f"the dispatch keys included on this thread changed ({self.include} -> {_tls_include()})"
        if _functorch_level() is not None:
            return "a functorch transform (vmap, grad) was left active"
        changed = [op for op, table in self._tables().items() if self.tables.get(op) != table]
        if changed:
            return f"kernels of {', '.join(changed[:4])} were registered again (torch.library or an extension)"
        return None
