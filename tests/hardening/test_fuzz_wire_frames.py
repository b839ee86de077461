"""Fuzzed frames into the trusted parent's reader: random, truncated, corrupted, hostile and oversized frames all
end as ``WireError`` (the sandbox turns it into a status), never another exception, and nothing a frame claims
makes the reader allocate more than the limits allow."""
from __future__ import annotations

import json
import struct
import tempfile
import time
import tracemalloc

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluators import wire

FUZZ = settings(max_examples=300, deadline=None)
LIMIT = 1 << 20     # max_bytes for the fuzzed reads, as a caller bounds a reply by its expected outputs


def read_frame(data: bytes, max_bytes: int = LIMIT):
    """``wire.recv`` over ``data`` (a regular file: a pipe would need a writer thread for frames over 64 KiB)."""
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        f.seek(0)
        return wire.recv(f.fileno(), max_bytes=max_bytes, deadline=time.monotonic() + 30)


def recv_or_wire_error(data: bytes, max_bytes: int = LIMIT):
    try:
        return read_frame(data, max_bytes)
    except wire.WireError as e:
        assert str(e)
        return None


def frame(header: object, blobs: bytes = b"") -> bytes:
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(text)) + text + blobs


def encode(kind: str, payload: object) -> bytes:
    """The bytes ``wire.send`` writes for one frame (into a file, then read back)."""
    with tempfile.TemporaryFile() as f:
        wire.send(f.fileno(), kind, payload)
        f.seek(0)
        return f.read()


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.bool, torch.complex64]
tensors = st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype),
                    st.lists(st.integers(0, 4), max_size=3), st.sampled_from(DTYPES))
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                        st.text(max_size=10))
payloads = st.recursive(st.one_of(json_leaves, tensors), lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner, inner), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_are_a_wire_error(data: bytes) -> None:
    assert recv_or_wire_error(data) is None or len(data) >= 8


@FUZZ
@given(payload=payloads, cut=st.integers(min_value=0))
def test_a_truncated_frame_is_a_wire_error(payload, cut: int) -> None:
    data = encode("outputs", payload)
    cut %= len(data)
    with pytest.raises(wire.WireError):
        read_frame(data[:cut])


@FUZZ
@given(payload=payloads, at=st.integers(min_value=0), byte=st.integers(0, 255), insert=st.booleans())
def test_a_corrupted_frame_is_read_or_a_wire_error(payload, at: int, byte: int, insert: bool) -> None:
    data = bytearray(encode("outputs", payload))
    at %= len(data)
    if insert:
        data.insert(at, byte)
    else:
        data[at] = byte
    recv_or_wire_error(bytes(data))


hostile_values = st.recursive(
    st.one_of(json_leaves, st.sampled_from([float("inf"), float("nan"), -1, 2**64, 2**48, "torch.float32", []])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
        st.sampled_from(["__t__", "dtype", "shape", "__tuple__", "__dict__", "x"]), inner, max_size=4)),
    max_leaves=10)


@FUZZ
@given(kind=hostile_values, payload=hostile_values, sizes=hostile_values, blobs=st.binary(max_size=64),
       drop=st.sampled_from([None, "kind", "payload", "sizes"]))
def test_a_hostile_header_is_read_or_a_wire_error(kind, payload, sizes, blobs: bytes, drop) -> None:
    header = {"kind": kind, "payload": payload, "sizes": sizes}
    if drop:
        del header[drop]
    got = recv_or_wire_error(frame(header, blobs))
    if got is not None:
        assert isinstance(got[0], str)


@pytest.mark.parametrize("header", [
    pytest.param(b"[" * 100_000, id="deep_json"),
    pytest.param(json.dumps({"kind": "x", "sizes": [], "payload": [[[[[[[[]]]]]]]] * 2}).encode(), id="fine"),
    pytest.param(b'{"kind": "x", "sizes": [Infinity], "payload": null}', id="infinite_size"),
    pytest.param(b'{"kind": "x", "sizes": [1e400], "payload": null}', id="overflowing_size"),
    pytest.param(b'{"kind": "x", "sizes": {"0": 1}, "payload": null}', id="sizes_not_a_list"),
    pytest.param(b'{"kind": "x", "sizes": "12", "payload": null}', id="sizes_a_string"),
    pytest.param(b'{"kind": "x", "sizes": [' + b"9" * 5000 + b'], "payload": null}', id="huge_int_size"),
    pytest.param(b"\xff\xfe", id="not_utf8"),
])
def test_malformed_headers_are_wire_errors(header: bytes) -> None:
    got = recv_or_wire_error(frame(header))
    assert got is None or header.startswith(b'{"kind": "x", "sizes": [], "payload": [[')


def test_a_deeply_nested_payload_is_a_wire_error() -> None:
    depth = 5000
    payload = b'{"__tuple__": [' * depth + b"1" + b"]}" * depth
    assert recv_or_wire_error(frame(b'{"kind": "x", "sizes": [], "payload": ' + payload + b"}")) is None


def test_two_tensors_on_one_blob_are_a_wire_error() -> None:
    t = {"__t__": 0, "dtype": "torch.uint8", "shape": [4]}
    with pytest.raises(wire.WireError, match="same blob"):
        read_frame(frame({"kind": "outputs", "payload": [t, t], "sizes": [4]}, b"abcd"))


def test_an_oversized_header_length_is_refused_before_reading() -> None:
    with pytest.raises(wire.WireError, match="over the limit"):
        read_frame(struct.pack("<Q", 2**63) + b"{}")


def test_blob_sizes_over_max_bytes_are_refused_before_allocating() -> None:
    with pytest.raises(wire.WireError, match="larger than allowed"):
        read_frame(frame({"kind": "x", "payload": None, "sizes": [LIMIT, 1]}))


def test_a_blob_the_host_cannot_allocate_is_a_wire_error() -> None:
    with pytest.raises(wire.WireError):
        read_frame(frame({"kind": "x", "payload": None, "sizes": [1 << 60]}), max_bytes=1 << 62)


def test_many_empty_blobs_are_refused() -> None:
    with pytest.raises(wire.WireError, match="at most"):
        read_frame(frame({"kind": "x", "payload": None, "sizes": [0] * (wire.MAX_BLOBS + 1)}))


def test_a_header_of_too_many_containers_is_refused_before_parsing() -> None:
    n = wire.MAX_CONTAINERS
    with pytest.raises(wire.WireError, match="lists and objects"):
        read_frame(frame(b'{"kind": "x", "sizes": [], "payload": [' + b"[]," * n + b"[]]}"))


def test_the_largest_header_allowed_costs_bounded_memory() -> None:
    # about the worst text for its size once containers are bounded: short strings, each a Python object
    n = (wire.MAX_HEADER_BYTES - 64) // 5
    header = b'{"kind": "x", "sizes": [], "payload": [' + b'"ab",' * (n - 1) + b'"ab"]}'
    assert len(header) <= wire.MAX_HEADER_BYTES
    tracemalloc.start()
    try:
        got = recv_or_wire_error(frame(header))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got is not None and len(got[1]) == n
    print(f"peak {peak / 2**20:.1f} MiB for a header of {len(header) / 2**20:.1f} MiB")
    assert peak < 25 * wire.MAX_HEADER_BYTES
