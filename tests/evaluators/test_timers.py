"""Timers return one raw sample per call, flush outside the timed region, and are found by kind."""
from __future__ import annotations

import time

import pytest

from evaluators.timers import CpuTimer, get_timer, last_level_cache_bytes


def test_cpu_timer_measures_a_sleep_as_at_least_its_length() -> None:
    timer = get_timer("cpu", "cpu")
    elapsed = timer(lambda: time.sleep(0.002), flush=False)
    assert isinstance(elapsed, int)
    assert elapsed >= 2_000_000  # the OS sleeps at least as long as asked: a lower bound, not a timing assertion
    assert timer.last_host_ns == elapsed


def test_cpu_timer_runs_the_function_exactly_once_per_call() -> None:
    calls = []
    timer = CpuTimer(flush_bytes=1 << 16)
    for flush in (False, True, False):
        timer(lambda: calls.append(1), flush=flush)
    assert len(calls) == 3


def test_cpu_flush_buffer_is_allocated_once_and_written() -> None:
    timer = CpuTimer(flush_bytes=1 << 20)
    timer(lambda: None, flush=True)
    buffer = timer._buffer
    assert buffer is not None and buffer.nbytes == 1 << 20
    before = int(buffer[0])
    timer(lambda: None, flush=True)
    assert timer._buffer is buffer
    assert int(buffer[0]) == (before + 1) % 256


def test_cpu_timer_without_flush_allocates_nothing() -> None:
    timer = CpuTimer(flush_bytes=1 << 20)
    timer(lambda: None, flush=False)
    assert timer._buffer is None


def test_cpu_flush_defaults_to_twice_the_last_level_cache() -> None:
    assert CpuTimer().flush_bytes == 2 * last_level_cache_bytes()


def test_last_level_cache_is_read_from_sysfs_layout(tmp_path) -> None:
    for name, level, size in (("index0", "1", "48K"), ("index2", "2", "2048K"), ("index3", "3", "32M")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "level").write_text(level + "\n")
        (tmp_path / name / "size").write_text(size + "\n")
    assert last_level_cache_bytes(str(tmp_path)) == 32 * 1024 * 1024


def test_last_level_cache_falls_back_to_32_mb(tmp_path) -> None:
    assert last_level_cache_bytes(str(tmp_path / "missing")) == 32 * 1024 * 1024


def test_unknown_timer_kind_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        get_timer("tpu")
    message = str(err.value)
    assert "tpu" in message
    for kind in ("cpu", "cuda", "mps"):
        assert kind in message


torch = pytest.importorskip("torch")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@needs_cuda
def test_cuda_event_time_is_within_the_host_time() -> None:
    timer = get_timer("cuda", "cuda")
    x = torch.randn(4096, 4096, device="cuda")
    for _ in range(3):
        timer(lambda: x @ x, flush=True)
    elapsed = timer(lambda: x @ x, flush=True)
    assert 0 < elapsed <= timer.last_host_ns


@pytest.mark.cuda
@needs_cuda
def test_cuda_timer_counts_work_left_on_a_side_stream() -> None:
    timer = get_timer("cuda", torch.device("cuda", torch.cuda.current_device()))
    side = torch.cuda.Stream()

    def on_side_stream() -> None:
        # returns at once on the host; only a device-wide synchronize waits for the spin
        with torch.cuda.stream(side):
            torch.cuda._sleep(200_000_000)

    timer(on_side_stream, flush=False)
    elapsed = timer(on_side_stream, flush=False)
    # the events must cover the side stream's work, which is most of the host-visible time
    assert elapsed >= 0.5 * timer.last_host_ns


@pytest.mark.cuda
@needs_cuda
def test_cuda_flush_buffer_is_several_times_l2_and_allocated_once() -> None:
    timer = get_timer("cuda", torch.cuda.current_device())
    timer(lambda: None, flush=True)
    buffer = timer._buffer
    l2 = torch.cuda.get_device_properties(timer.device).L2_cache_size
    assert buffer.numel() == 4 * l2 and buffer.dtype == torch.uint8
    timer(lambda: None, flush=True)
    assert timer._buffer is buffer
