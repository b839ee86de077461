"""Large outputs go from the pipe to the comparison's device without landing in fresh host memory.

A checked call's outputs at KernelBench's sizes are gigabytes. Received into a new host tensor, each gigabyte's
pages are faulted in again on every call (on this 2-core machine that is most of the receive time), then copied
to the device for the comparison. ``wire.recv(..., device="cuda")`` streams each blob of at least
``STREAM_MIN_BYTES`` through one reused host buffer per thread straight into a device tensor; the child stages a
CUDA output in a page-locked buffer that it keeps for the next check of the same shape.
"""
from __future__ import annotations

import os
import threading

import pytest
import torch

from evaluators import child as child_mod
from evaluators import wire

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _feed(data: bytes, close_early: bool = False) -> int:
    r, w = wire.pipe()

    def write() -> None:
        try:
            wire._write_all(w, data[: len(data) // 2] if close_early else data)
        finally:
            os.close(w)
    threading.Thread(target=write, daemon=True).start()
    return r


def test_a_blob_is_streamed_in_chunks_through_one_reused_buffer(monkeypatch):
    monkeypatch.setattr(wire, "STAGE_BYTES", 1 << 20)
    monkeypatch.setattr(wire, "_STAGE", threading.local())
    payload = torch.randint(0, 256, ((5 << 20) + 123,), dtype=torch.uint8)
    r = _feed(payload.numpy().tobytes())
    try:
        got = wire._read_to_device(r, payload.numel(), None, "cpu")
    finally:
        os.close(r)
    assert torch.equal(got, payload)                 # every chunk, the short last one included, in its place
    stage = wire._STAGE.buf
    assert stage.numel() == 1 << 20                  # one buffer of STAGE_BYTES, not one of the blob's size
    r = _feed(payload.numpy().tobytes())
    try:
        wire._read_to_device(r, payload.numel(), None, "cpu")
    finally:
        os.close(r)
    assert wire._STAGE.buf.data_ptr() == stage.data_ptr()     # reused by the next blob on this thread


def test_a_peer_that_closes_mid_blob_is_a_wire_error(monkeypatch):
    monkeypatch.setattr(wire, "STAGE_BYTES", 1 << 20)
    monkeypatch.setattr(wire, "_STAGE", threading.local())
    r = _feed(bytes(3 << 20), close_early=True)
    try:
        with pytest.raises(wire.WireError, match="closed"):
            wire._read_to_device(r, 3 << 20, None, "cpu")
    finally:
        os.close(r)


def test_on_a_cpu_device_a_frame_lands_in_host_memory_as_before():
    big = torch.randn(5 << 20)          # 20 MiB: above STREAM_MIN_BYTES
    r, w = wire.pipe()
    threading.Thread(target=lambda: (wire.send(w, "outputs", {"outputs": [big]}), os.close(w)), daemon=True).start()
    try:
        kind, payload = wire.recv(r, device="cpu")
    finally:
        os.close(r)
    assert kind == "outputs" and payload["outputs"][0].device.type == "cpu"
    assert torch.equal(payload["outputs"][0], big)


def test_staging_off_cuda_copies_to_host_memory_as_before():
    state: dict = {}
    t = torch.randn(4, 4)
    assert torch.equal(child_mod._to_stage(state, 0, t, torch), t) and "stage_buffers" not in state


@cuda
def test_a_large_blob_arrives_on_the_device_and_a_small_one_in_host_memory():
    big = torch.randn(6 << 20, device="cuda")          # 24 MiB
    small = torch.arange(10, dtype=torch.int64)
    r, w = wire.pipe()
    threading.Thread(target=lambda: (wire.send(w, "outputs", {"outputs": [big.cpu(), small]}), os.close(w)),
                     daemon=True).start()
    try:
        kind, payload = wire.recv(r, device="cuda")
    finally:
        os.close(r)
    got_big, got_small = payload["outputs"]
    assert got_big.device.type == "cuda" and torch.equal(got_big, big)
    assert got_small.device.type == "cpu" and torch.equal(got_small, small)


@cuda
def test_the_child_stages_cuda_outputs_in_one_page_locked_buffer_per_output():
    state: dict = {}
    a = torch.randn(1024, 1024, device="cuda")
    first = child_mod._to_stage(state, 0, a, torch)
    assert first.device.type == "cpu" and first.is_pinned() and torch.equal(first, a.cpu())
    b = torch.randn(1024, 1024, device="cuda")
    second = child_mod._to_stage(state, 0, b, torch)
    assert second.data_ptr() == first.data_ptr() and torch.equal(second, b.cpu())
    other = child_mod._to_stage(state, 0, torch.randn(8, device="cuda"), torch)
    assert other.shape == (8,)                            # a new shape gets a buffer of its own
