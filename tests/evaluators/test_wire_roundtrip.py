"""Frames between parent and child carry tensors bit-exactly, bound what a hostile peer can make the reader
allocate or wait for, and never unpickle anything."""
from __future__ import annotations

import json
import math
import os
import pickle
import struct
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

from evaluators import wire

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.uint8, torch.int16,
          torch.int32, torch.int64, torch.bool, torch.complex64, torch.complex128]


@pytest.fixture
def pipe():
    r, w = os.pipe()
    fds = {"r": r, "w": w}
    yield fds
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass


def close_writer(fds: dict) -> None:
    os.close(fds["w"])
    fds["w"] = -1


def roundtrip(fds: dict, payload, kind: str = "msg"):
    """Send from a thread (a pipe holds only 64 KiB) and receive here."""
    errors: list[BaseException] = []

    def writer():
        try:
            wire.send(fds["w"], kind, payload)
        except BaseException as e:  # re-raised below; closing tells the reader at once
            errors.append(e)
            close_writer(fds)

    t = threading.Thread(target=writer)
    t.start()
    try:
        got_kind, got = wire.recv(fds["r"], deadline=time.monotonic() + 60)
    finally:
        t.join()
        if errors:
            raise errors[0]
    assert got_kind == kind
    return got


def raw_frame(header, blobs=()) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def bits(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def assert_bit_identical(got, want: torch.Tensor) -> None:
    assert type(got) is torch.Tensor
    assert got.dtype == want.dtype and got.shape == want.shape and got.device.type == "cpu"
    assert bits(got) == bits(want)


def random_bits(dtype: torch.dtype, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Every bit pattern the dtype can hold (NaN payloads, subnormals, -0.0); bool gets valid 0/1 bytes only."""
    g = torch.Generator().manual_seed(seed)
    if dtype is torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    n = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    return torch.randint(0, 256, (n,), dtype=torch.uint8, generator=g).view(dtype).reshape(shape)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (7,), (5, 3, 2)], ids=str)
def test_every_dtype_and_shape_roundtrips_bit_exactly(pipe, dtype, shape):
    t = random_bits(dtype, shape, seed=len(shape))
    assert_bit_identical(roundtrip(pipe, t), t)


def test_special_float_values_keep_their_bits(pipe):
    nans = torch.frombuffer(bytearray(struct.pack("<3I", 0x7FC00001, 0x7F800001, 0xFFC00000)), dtype=torch.float32)
    specials = torch.cat([torch.tensor([0.0, -0.0, math.inf, -math.inf, 1e-45, -1e-45]), nans])
    assert_bit_identical(roundtrip(pipe, specials), specials)


@pytest.mark.parametrize("make", [
    lambda: torch.arange(20.0).reshape(4, 5).t(),
    lambda: torch.arange(30, dtype=torch.int64)[::3],
    lambda: torch.arange(6.0, dtype=torch.bfloat16).expand(4, 6),
    lambda: torch.arange(24.0).reshape(2, 3, 4).permute(2, 0, 1)[1:, :, ::2],
    lambda: torch.tensor([True, False, True, True]).reshape(2, 2).t(),
    lambda: torch.randn(3, 4, dtype=torch.complex64)[:, 1:3],
], ids=["transposed", "strided", "expanded", "permuted_sliced", "bool_transposed", "complex_sliced"])
def test_non_contiguous_tensors_arrive_with_their_values(pipe, make):
    t = make()
    assert not t.is_contiguous()
    got = roundtrip(pipe, t)
    assert_bit_identical(got, t)
    assert got.is_contiguous()


@pytest.mark.parametrize("make", [lambda: torch.randn(4, dtype=torch.complex64).conj(),
                                  lambda: torch._neg_view(torch.randn(4))], ids=["conj_view", "neg_view"])
def test_lazy_conjugate_and_negative_views_roundtrip(pipe, make):
    t = make()
    got = roundtrip(pipe, t)
    assert_bit_identical(got, t.resolve_conj().resolve_neg())


def test_large_tensor_roundtrips(pipe):
    t = random_bits(torch.float32, (4096, 4096), seed=7)   # 64 MiB, a thousand times the pipe's buffer
    assert_bit_identical(roundtrip(pipe, t), t)


def test_nested_structures_keep_their_shape_and_types(pipe):
    a, b, c = torch.randn(2, 3), torch.arange(5), torch.tensor(True)
    payload = (a, [1, 2.5, "s", None, True, (b,)], {"x": c, "y": (3, [4]), "z": {"deep": [a]}}, ())
    got = roundtrip(pipe, payload)
    assert isinstance(got, tuple) and len(got) == 4
    assert_bit_identical(got[0], a)
    assert got[1][:5] == [1, 2.5, "s", None, True]
    assert isinstance(got[1], list) and isinstance(got[1][5], tuple)
    assert_bit_identical(got[1][5][0], b)
    assert set(got[2]) == {"x", "y", "z"}
    assert_bit_identical(got[2]["x"], c)
    assert got[2]["y"] == (3, [4])
    assert_bit_identical(got[2]["z"]["deep"][0], a)
    assert got[3] == ()


def test_dicts_that_look_like_frame_markers_stay_dicts(pipe):
    payload = {"__t__": 0, "dtype": "torch.float32", "shape": [1], "__tuple__": [1]}
    assert roundtrip(pipe, payload) == payload


def test_non_finite_scalars_roundtrip(pipe):
    got = roundtrip(pipe, [math.inf, -math.inf, math.nan])
    assert got[0] == math.inf and got[1] == -math.inf and math.isnan(got[2])


def test_objects_the_wire_cannot_carry_are_refused_by_the_sender(pipe):
    with pytest.raises(TypeError):
        wire.send(pipe["w"], "msg", {"f": object()})


def test_frame_declaring_more_than_max_bytes_fails_before_allocating(pipe):
    os.write(pipe["w"], raw_frame({"kind": "outputs", "payload": None, "sizes": [256 << 20, 256 << 20]}))
    tracemalloc.start()
    try:
        with pytest.raises(wire.WireError) as e:
            wire.recv(pipe["r"], max_bytes=1 << 20, deadline=time.monotonic() + 5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert type(e.value) is wire.WireError, "it must refuse the frame, not wait for 512 MiB that never come"
    assert peak < 1 << 20


def test_negative_declared_size_is_refused(pipe):
    os.write(pipe["w"], raw_frame({"kind": "outputs", "payload": None, "sizes": [-5, 10]}))
    with pytest.raises(wire.WireError):
        wire.recv(pipe["r"], deadline=time.monotonic() + 5)


def test_oversized_header_is_refused_before_reading_it(pipe):
    os.write(pipe["w"], struct.pack("<Q", 1 << 40))
    tracemalloc.start()
    try:
        with pytest.raises(wire.WireError) as e:
            wire.recv(pipe["r"], deadline=time.monotonic() + 5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert type(e.value) is wire.WireError
    assert peak < 1 << 20


@pytest.mark.parametrize("cut", ["length", "header", "blob"])
def test_truncated_frame_raises_wire_error(pipe, cut):
    frame = raw_frame({"kind": "outputs", "payload": {"__t__": 0, "dtype": "torch.uint8", "shape": [100]},
                       "sizes": [100]}, [bytes(100)])
    keep = {"length": 4, "header": 20, "blob": len(frame) - 50}[cut]
    os.write(pipe["w"], frame[:keep])
    close_writer(pipe)
    with pytest.raises(wire.WireError) as e:
        wire.recv(pipe["r"], deadline=time.monotonic() + 5)
    assert type(e.value) is wire.WireError, "a closed pipe is an error, not a timeout"


def test_blob_not_matching_its_shape_is_refused(pipe):
    os.write(pipe["w"], raw_frame({"kind": "outputs", "payload": {"__t__": 0, "dtype": "torch.float32", "shape": [3]},
                                   "sizes": [8]}, [bytes(8)]))
    with pytest.raises(wire.WireError, match="byte count"):
        wire.recv(pipe["r"], deadline=time.monotonic() + 5)


def test_recv_with_a_past_deadline_times_out(pipe):
    with pytest.raises(wire.WireTimeout):
        wire.recv(pipe["r"], deadline=time.monotonic() - 1)


def test_recv_times_out_when_the_frame_stops_halfway(pipe):
    frame = raw_frame({"kind": "outputs", "payload": None, "sizes": [64]}, [bytes(64)])
    os.write(pipe["w"], frame[:-10])
    with pytest.raises(wire.WireTimeout):
        wire.recv(pipe["r"], deadline=time.monotonic() + 0.2)


class _Boom:
    """Unpickling this creates the marker file: the side effect a hostile child would use."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_payload_arrives_as_inert_bytes(pipe, tmp_path, monkeypatch):
    marker = tmp_path / "unpickled.txt"
    blob = pickle.dumps(_Boom(str(marker)))

    def refuse(*a, **k):
        raise AssertionError("the wire must never unpickle")

    for name in ("loads", "load", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    os.write(pipe["w"], raw_frame({"kind": "outputs",
                                   "payload": [{"__t__": 0, "dtype": "torch.uint8", "shape": [len(blob)]}, blob.hex()],
                                   "sizes": [len(blob)]}, [blob]))
    _, got = wire.recv(pipe["r"], deadline=time.monotonic() + 5)
    assert bytes(got[0].numpy()) == blob
    assert got[1] == blob.hex()
    assert not marker.exists()


@pytest.mark.parametrize("dtype", ["object", "torch.object", "pickle", "torch.float8_e4m3fn"])
def test_unknown_dtype_names_are_refused(pipe, dtype):
    os.write(pipe["w"], raw_frame({"kind": "outputs", "payload": {"__t__": 0, "dtype": dtype, "shape": [1]},
                                   "sizes": [1]}, [b"x"]))
    with pytest.raises(wire.WireError, match="unsupported dtype"):
        wire.recv(pipe["r"], deadline=time.monotonic() + 5)


_MALFORMED_ESCAPES = ()


@pytest.mark.parametrize("header,blobs", [
    pytest.param([1, 2], [], id="header_not_an_object"),
    pytest.param({"kind": "x", "payload": None, "sizes": 5}, [], id="sizes_not_a_list"),
    pytest.param({"kind": "x", "payload": {"__t__": 5, "dtype": "torch.uint8", "shape": [1]}, "sizes": [1]}, [b"a"],
                 id="blob_index_out_of_range", marks=_MALFORMED_ESCAPES),
    pytest.param({"kind": "x", "sizes": []}, [], id="payload_missing", marks=_MALFORMED_ESCAPES),
    pytest.param({"kind": "x", "payload": {"__dict__": [[1, 2, 3]]}, "sizes": []}, [], id="dict_items_malformed",
                 marks=_MALFORMED_ESCAPES),
    pytest.param({"kind": "x", "payload": {"__tuple__": 5}, "sizes": []}, [], id="tuple_not_a_list",
                 marks=_MALFORMED_ESCAPES),
    pytest.param({"kind": "x", "payload": {"__t__": 0, "dtype": "torch.uint8", "shape": [0, -1]}, "sizes": [0]}, [],
                 id="negative_dimension", marks=_MALFORMED_ESCAPES),
    pytest.param({"kind": "x", "payload": {"__t__": 0, "dtype": "torch.uint8", "shape": ["a"]}, "sizes": [1]},
                 [b"a"], id="dimension_not_a_number", marks=_MALFORMED_ESCAPES),
    pytest.param({"kind": "x", "payload": {"__t__": 0, "dtype": "torch.uint8", "shape": [1 << 62, 1 << 62, 0]},
                  "sizes": [0]}, [], id="shape_overflows", marks=_MALFORMED_ESCAPES),
    pytest.param({"kind": "x", "payload": {"__t__": 0, "dtype": ["a"], "shape": [1]}, "sizes": [1]}, [b"a"],
                 id="dtype_not_a_string", marks=_MALFORMED_ESCAPES),
])
def test_any_malformed_frame_raises_wire_error_and_nothing_else(pipe, header, blobs):
    os.write(pipe["w"], raw_frame(header, blobs))
    close_writer(pipe)
    with pytest.raises(wire.WireError):
        wire.recv(pipe["r"], deadline=time.monotonic() + 5)


def test_the_sandbox_pipe_holds_a_megabyte_and_carries_a_large_tensor_whole() -> None:
    import fcntl
    r, w = wire.pipe()
    try:
        if int(Path("/proc/sys/fs/pipe-max-size").read_text()) >= wire.PIPE_BYTES:
            assert fcntl.fcntl(w, getattr(fcntl, "F_GETPIPE_SZ", 1032)) == wire.PIPE_BYTES
        sent = torch.arange(3 << 20, dtype=torch.float32)          # 12 MiB: many fills of the pipe
        writer = threading.Thread(target=wire.send, args=(w, "out", [sent]))
        writer.start()
        kind, (got,) = wire.recv(r, deadline=time.monotonic() + 60)
        writer.join(10)
        assert kind == "out" and torch.equal(got, sent)
    finally:
        os.close(r), os.close(w)
