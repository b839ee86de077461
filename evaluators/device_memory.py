"""How much of a shared GPU's memory an evaluation takes, known before its reference touches the device.

Several evaluations share one GPU (verify slots and builds ahead). Each reserves its share of the device's memory
before anything of it reaches the device, the reference's own first call included, so that evaluations whose data
is large take turns instead of running each other (or the trusted evaluator) out of memory.

The share follows the reference's data (weights, one call's inputs and outputs). Before the problem has run on
this evaluator, the data is sized by building the model and its inputs on the meta device and running forward
there (no memory, no compute); after its first real run, by what that run measured.
"""
from __future__ import annotations

import logging
import threading

import torch

from evaluators import inputs as inp
from evaluators.problem import load_problem_module

log = logging.getLogger(__name__)

# An evaluation's device memory as a multiple of its reference's data (weights, one call's inputs and outputs):
# here the reference, its inputs and outputs and a float64 copy where asked; in the candidate's child its copy of
# them, the poison and its temporaries; in the baselines' children theirs. Plus each child's CUDA context.
DEVICE_DATA_MULTIPLE = 8
CHILD_CONTEXT_BYTES = 3 * (1 << 29)
DEVICE_SHARE = 0.8           # of the device's memory, what the reservations may take together
UNKNOWN_SHARE = 0.5          # of the reservations' capacity, for a problem whose data could not be sized

_MEASURED: dict[tuple[str, str, str], int] = {}     # (problem file, scale, device) -> data bytes of a real run
_LOCK = threading.Lock()


def _key(problem_path: str, scale: str, device: str) -> tuple[str, str, str]:
    return (str(problem_path), scale, device)


# Problems that ran out of device memory on this evaluator. While the device was shared: each later evaluation of
# the problem reserves OUT_OF_MEMORY_GROWTH times more (up to MAX_GROWTH), so that it waits for room up front
# instead of failing and being run again alone. Alone (whole device reserved), by the problem's side (a baseline, or
# the evaluator's reference): later evaluations are not run alone again, since each such run drains the device for
# minutes and ends the same way.
OUT_OF_MEMORY_GROWTH = 1.5
MAX_GROWTH = 4.0
_GROWTH: dict[tuple[str, str, str], float] = {}
_FAILED_ALONE: dict[tuple[str, str, str], str] = {}


def ran_out_shared(problem_path: str, scale: str, device: str) -> float:
    """An evaluation of the problem ran out of memory while the device was shared: later ones reserve more. Returns
    the problem's growth factor now."""
    key = _key(problem_path, scale, device)
    with _LOCK:
        _GROWTH[key] = min(MAX_GROWTH, _GROWTH.get(key, 1.0) * OUT_OF_MEMORY_GROWTH)
        return _GROWTH[key]


def growth(problem_path: str, scale: str, device: str) -> float:
    """How many times its data multiple the problem's evaluations reserve (1.0 until one ran out while shared)."""
    with _LOCK:
        return _GROWTH.get(_key(problem_path, scale, device), 1.0)


def ran_out_alone(problem_path: str, scale: str, device: str, reason: str) -> None:
    """The problem's own side (a baseline, the reference) ran out of memory with the device's memory reserved whole."""
    with _LOCK:
        _FAILED_ALONE[_key(problem_path, scale, device)] = reason


def failed_alone(problem_path: str, scale: str, device: str) -> str | None:
    """Why the problem ran out of memory alone on this device before, or None."""
    with _LOCK:
        return _FAILED_ALONE.get(_key(problem_path, scale, device))


def remember(problem_path: str, scale: str, device: str, data_bytes: int) -> None:
    """What the reference's first real run on this evaluator measured: the size later evaluations reserve by."""
    with _LOCK:
        _MEASURED[_key(problem_path, scale, device)] = int(data_bytes)


def on_meta(problem_path: str, scale: str) -> int | None:
    """The reference's data bytes from a run on the meta device: weights, inputs and outputs; None when the problem
    cannot run there (it moves tensors to a real device itself, or an op has no meta kernel)."""
    try:
        module, _ = load_problem_module(problem_path, scale)
        with torch.device("meta"):
            model = module.Model(*module.get_init_inputs())
            ins = list(module.get_inputs())
            out = model(*ins)
        outs, bad = inp.flatten_outputs(out)
        weights = inp.nbytes(list(model.state_dict().values())) if isinstance(model, torch.nn.Module) else 0
        if bad:
            return None
        return weights + inp.nbytes(ins) + inp.nbytes(outs)
    except Exception as e:      # any failure only means the size is unknown: the reservation is then conservative
        log.debug("sizing %s on the meta device failed: %s", problem_path, e)
        return None


def data_bytes(problem_path: str, scale: str, device: str) -> int | None:
    """The reference's data bytes: measured by an earlier run here, else sized on the meta device, else None."""
    with _LOCK:
        known = _MEASURED.get(_key(problem_path, scale, device))
    return known if known is not None else on_meta(problem_path, scale)


def need_bytes(data: int | None, capacity: int) -> int:
    """The reservation for an evaluation whose reference holds ``data`` bytes (None: unknown) out of ``capacity``,
    at its largest (while its candidate and baselines are timed)."""
    if data is None:
        return int(UNKNOWN_SHARE * capacity)
    return DEVICE_DATA_MULTIPLE * data + CHILD_CONTEXT_BYTES


# The reservation follows the evaluation's phases. Until its baselines' children are built it holds the reference,
# its inputs, outputs and float64 copy in the evaluator and the candidate's child (its copy, the poison, its
# temporaries) with one context; then it grows by the baselines' children (each its weights, inputs and outputs and
# a context) for the timing. The two together are ``need_bytes``: the peak is covered as before, and evaluations
# building or verifying take less of the device meanwhile.
BASELINES_DATA_MULTIPLE = 3


def phase_bytes(data: int | None, capacity: int, factor: float = 1.0) -> tuple[int, int]:
    """(bytes held from the start, bytes added before the baselines' children are built) for an evaluation whose
    reference holds ``data`` bytes (None: unknown, then all of it from the start); the sum is ``need_bytes``, times
    ``factor`` (``growth``)."""
    total = need_bytes(data, capacity)
    if data is None:
        return int(total * factor), 0
    later = BASELINES_DATA_MULTIPLE * data + 2 * CHILD_CONTEXT_BYTES // 3
    return int((total - later) * factor), int(later * factor)


# A kept baseline child's device memory while it waits for the next candidate of its problem, as a multiple of
# the reference's data: its weights, its last call's inputs and outputs and what its allocator keeps cached.
KEPT_DATA_MULTIPLE = 3


def kept_bytes(data: int) -> int:
    """The reservation a kept baseline child of a problem whose reference holds ``data`` bytes waits under."""
    return KEPT_DATA_MULTIPLE * int(data) + CHILD_CONTEXT_BYTES


def capacity_bytes(device: str) -> int:
    return int(DEVICE_SHARE * torch.cuda.get_device_properties(torch.device(device)).total_memory)

