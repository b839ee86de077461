"""ncu's CSV report becomes per-kernel rows with their roofline on the machine model; the prompt shows them.

The report below is written by hand after Nsight Compute's documented ``--csv --page details`` layout (a header
row naming ID, Kernel Name, Section Name, Metric Name, Metric Unit and Metric Value among others, the 2023+ rule
columns after them, then one quoted row per kernel launch and metric; ``==PROF==`` messages between; values with
thousands separated by commas). It is not output captured from a device: the GPU host's run of
experiments/gpu/ncu_check.sh checks the same parser on ncu's real output.
"""
from __future__ import annotations

import pytest

from evaluators.machine_specs import machine_spec
from evaluators.ncu import launcher
from evaluators.ncu_report import (CORE_METRICS, NCU_MAX_KERNELS, against_problem, ncu_messages, parse_csv,
                                   roofline_row, select_metrics, summarise, to_base)
from proposers.llm.prompts import profile_text

HEADER = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size",'
          '"Device","CC","Section Name","Metric Name","Metric Unit","Metric Value","Rule Name","Rule Type",'
          '"Rule Description","Estimated Speedup Type","Estimated Speedup"')
SOFTMAX = "_softmax_rows"
GEMM = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel"


def _rows(launch_id: int, kernel: str, metrics: list[tuple[str, str, str]]) -> list[str]:
    return [f'"{launch_id}","4242","python3","127.0.0.1","{kernel}","1","7","(512, 1, 1)","(16384, 1, 1)","0",'
            f'"9.0","Command line profiler metrics","{name}","{unit}","{value}","","","","",""'
            for name, unit, value in metrics]


# Per call (two calls profiled, one launch of each kernel in each):
# softmax: 0.125 ms, 480 MB of DRAM traffic, 2.669e8 float32 FLOPs -> memory floor 0.1 ms on the H200 (4800 GB/s)
# gemm: 2 ms, 9.894e11 bf16 tensor FLOPs -> compute floor 1 ms on the H200's 989.4 TFLOP/s, 0.48 GB of DRAM
SOFTMAX_METRICS = [("gpu__time_duration.sum", "nsecond", "125,000"), ("dram__bytes_read.sum", "byte", "360,000,000"),
                   ("dram__bytes_write.sum", "byte", "120,000,000"),
                   ("sm__sass_thread_inst_executed_op_ffma_pred_on.sum", "inst", "100,000,000"),
                   ("sm__sass_thread_inst_executed_op_fadd_pred_on.sum", "inst", "33,450,000"),
                   ("sm__sass_thread_inst_executed_op_fmul_pred_on.sum", "inst", "33,450,000"),
                   ("sm__throughput.avg.pct_of_peak_sustained_elapsed", "%", "21.50"),
                   ("dram__throughput.avg.pct_of_peak_sustained_elapsed", "%", "81.00"),
                   ("sm__sass_thread_inst_executed_op_hfma_pred_on.sum", "inst", "0")]
# the second call's launch as ncu prints it with its automatic units: usecond, Mbyte, Minst
SOFTMAX_AUTO_UNITS = [("gpu__time_duration.sum", "usecond", "125"), ("dram__bytes_read.sum", "Mbyte", "360"),
                      ("dram__bytes_write.sum", "Mbyte", "120"),
                      ("sm__sass_thread_inst_executed_op_ffma_pred_on.sum", "Minst", "100"),
                      ("sm__sass_thread_inst_executed_op_fadd_pred_on.sum", "inst", "33,450,000"),
                      ("sm__sass_thread_inst_executed_op_fmul_pred_on.sum", "inst", "33,450,000"),
                      ("sm__throughput.avg.pct_of_peak_sustained_elapsed", "%", "22.50"),
                      ("dram__throughput.avg.pct_of_peak_sustained_elapsed", "%", "n/a")]
GEMM_METRICS = [("gpu__time_duration.sum", "msecond", "2.00"), ("dram__bytes_read.sum", "Gbyte", "0.40"),
                ("dram__bytes_write.sum", "Mbyte", "80"),
                ("sm__ops_path_tensor_src_bf16_dst_fp32.sum", "", "989,400,000,000"),
                ("sm__throughput.avg.pct_of_peak_sustained_elapsed", "%", "64.0")]

REPORT = "\n".join([
    "==PROF== Connected to process 4242 (/usr/bin/python3.12)",
    "==PROF== Profiling \"_softmax_rows\" - 0: 0%....50%....100% - 9 passes",
    HEADER,
    *_rows(0, SOFTMAX, SOFTMAX_METRICS), *_rows(1, GEMM, GEMM_METRICS),
    "a line the program printed itself",
    *_rows(2, SOFTMAX, SOFTMAX_AUTO_UNITS), *_rows(3, GEMM, GEMM_METRICS),
    "==PROF== Disconnected from process 4242",
])


def test_values_are_read_in_base_units() -> None:
    assert to_base("125,000", "nsecond") == pytest.approx(125e-6)
    assert to_base("2.00", "msecond") == pytest.approx(2e-3)
    assert to_base("360", "Mbyte") == pytest.approx(3.6e8)
    assert to_base("1", "Kibyte") == 1024
    assert to_base("100", "Minst") == pytest.approx(1e8)
    assert to_base("81.00", "%") == pytest.approx(81.0)
    assert to_base("n/a", "%") is None


def test_the_report_becomes_one_launch_per_id_in_profiling_order() -> None:
    launches = parse_csv(REPORT)
    assert [x.name for x in launches] == [SOFTMAX, GEMM, SOFTMAX, GEMM]
    first, third = launches[0].metrics, launches[2].metrics
    assert first["gpu__time_duration.sum"] == pytest.approx(third["gpu__time_duration.sum"]) == pytest.approx(125e-6)
    assert first["dram__bytes_read.sum"] == pytest.approx(third["dram__bytes_read.sum"]) == pytest.approx(3.6e8)
    assert "dram__throughput.avg.pct_of_peak_sustained_elapsed" not in third     # n/a is no reading
    assert parse_csv("==ERROR== Failed to initialize the profiler: LibraryNotLoaded\n") == []


def test_each_kernel_row_carries_its_roofline_on_the_machine_model() -> None:
    h200 = machine_spec("h200")
    ncu = summarise(parse_csv(REPORT), calls=2, spec=h200)
    gemm, softmax = ncu["rows"]                        # the slowest first
    assert gemm["name"] == GEMM and softmax["name"] == SOFTMAX
    assert softmax["launches"] == 1 and softmax["duration_ms"] == pytest.approx(0.125)
    assert softmax["dram_bytes"] == pytest.approx(4.8e8)
    assert softmax["flops_by_dtype"] == {"float32": pytest.approx(2 * 1e8 + 2 * 3.345e7)}
    assert softmax["arithmetic_intensity"] == pytest.approx(2.669e8 / 4.8e8)
    assert softmax["memory_floor_ms"] == pytest.approx(0.1)
    assert softmax["compute_floor_ms"] == pytest.approx(2.669e8 / 66.9e12 * 1e3)
    assert softmax["bound"] == "memory" and softmax["fraction_of_floor"] == pytest.approx(0.8)
    assert softmax["sm_throughput_pct"] == pytest.approx(22.0) and softmax["dram_throughput_pct"] == pytest.approx(81)
    assert gemm["flops_by_dtype"] == {"tensor.bfloat16": pytest.approx(9.894e11)}
    assert gemm["compute_floor_ms"] == pytest.approx(1.0) and gemm["memory_floor_ms"] == pytest.approx(0.1)
    assert gemm["bound"] == "compute" and gemm["fraction_of_floor"] == pytest.approx(0.5)
    t = ncu["totals"]
    assert t["kernels"] == 2 and t["launches"] == 2 and t["profiled_launches"] == 4
    assert t["duration_ms"] == pytest.approx(2.125) and t["dram_bytes"] == pytest.approx(9.6e8)
    # the units may run at once, so the compute floor is the slowest precision's, not their sum
    assert t["compute_floor_ms"] == pytest.approx(1.0) and t["floor_ms"] == pytest.approx(1.0)
    assert t["fraction_of_floor"] == pytest.approx(1.0 / 2.125)
    assert ncu["machine"] == h200.name and ncu["truncated"] is False


def test_without_a_machine_model_a_row_keeps_its_intensity_only() -> None:
    row = roofline_row({"float32": 2e9}, 1e9, 1e-3, None)
    assert row == {"arithmetic_intensity": pytest.approx(2.0)}
    assert roofline_row({}, 0.0, 1e-3, None) == {"arithmetic_intensity": None}


def test_a_precision_the_model_lacks_takes_its_fastest_rate_so_the_floor_stays_a_floor() -> None:
    h200 = machine_spec("h200")                       # no fp4 on Hopper: the fastest tensor rate (fp8) bounds it
    row = roofline_row({"tensor.float4": 1.9789e12}, 0.0, 2e-3, h200)
    assert row["compute_floor_ms"] == pytest.approx(1.0) and row["fraction_of_floor"] == pytest.approx(0.5)


def test_totals_stand_beside_the_problems_flops_and_fewest_bytes() -> None:
    ncu = summarise(parse_csv(REPORT), calls=2, spec=machine_spec("h200"))
    out = against_problem(ncu, {"bytes": 4.8e8, "flops": 1e12})
    assert out["totals"]["dram_over_minimal"] == pytest.approx(2.0)
    assert out["totals"]["flops_over_problem"] == pytest.approx((9.894e11 + 2.669e8) / 1e12)
    assert out["rows"] == ncu["rows"] and "dram_over_minimal" not in ncu["totals"]


def test_a_capped_run_says_its_figures_are_partial() -> None:
    many = "\n".join([HEADER] + [r for i in range(NCU_MAX_KERNELS) for r in _rows(i, SOFTMAX, SOFTMAX_METRICS)])
    assert summarise(parse_csv(many), calls=2, spec=None)["truncated"] is True


def test_metrics_follow_the_chips_listing() -> None:
    assert select_metrics(None) == CORE_METRICS
    assert select_metrics("garbage that names no metric") == CORE_METRICS
    listing = "\n".join(["Device NVIDIA H200 (GH100)", "Metric Name   Metric Description"]
                        + [f"{m.split('.')[0]}   something" for m in CORE_METRICS]
                        + ["sm__ops_path_tensor_src_bf16_dst_fp32   # of math ops", "sm__ops_path_tensor_src_fp8   ops",
                           "sm__ops_path_tensor_src_fp8_dst_fp16   ops", "sm__ops_path_tensor_src_fp8_dst_fp32   ops",
                           "sm__ops_path_tensor_src_tf32_dst_fp32   ops"])
    chosen = select_metrics(listing)
    assert chosen[:len(CORE_METRICS)] == CORE_METRICS
    # fp8's per-destination counters, never also its total (which would count the same operations twice)
    assert set(chosen[len(CORE_METRICS):]) == {
        "sm__ops_path_tensor_src_bf16_dst_fp32.sum", "sm__ops_path_tensor_src_fp8_dst_fp16.sum",
        "sm__ops_path_tensor_src_fp8_dst_fp32.sum", "sm__ops_path_tensor_src_tf32_dst_fp32.sum"}
    no_dram_read = listing.replace("dram__bytes_read ", "dram__bytes_readx ")
    assert "dram__bytes_read.sum" not in select_metrics(no_dram_read)


def test_the_launcher_leaves_clocks_alone_and_profiles_only_the_range(tmp_path) -> None:
    cmd = launcher("/opt/ncu", CORE_METRICS, tmp_path / "r.csv", private_network=True)
    assert cmd[:5] == (cmd[0], "-m", "evaluators.ncu", "netns", "--") and cmd[5] == "/opt/ncu"
    opts = dict(zip(cmd[6::1], cmd[7::1]))
    assert opts["--clock-control"] == "none" and opts["--profile-from-start"] == "off"
    assert opts["--log-file"] == str(tmp_path / "r.csv") and opts["--metrics"] == ",".join(CORE_METRICS)
    assert launcher("/opt/ncu", CORE_METRICS, tmp_path / "r.csv", private_network=False)[0] == "/opt/ncu"


def test_ncus_own_errors_are_picked_out_of_its_output() -> None:
    out = ("==PROF== Connected to process 1\n==ERROR== Failed to initialize the profiler: LibraryNotLoaded\n"
           "==WARNING== No kernels were profiled.\n")
    assert ncu_messages(out) == "Failed to initialize the profiler: LibraryNotLoaded"
    assert ncu_messages("==WARNING== No kernels were profiled.\n") == "No kernels were profiled."
    assert ncu_messages("kswarm-ncu: on the host's network: no namespace\n") == ""


def test_the_prompt_shows_the_slowest_kernels_with_their_floors() -> None:
    ncu = against_problem(summarise(parse_csv(REPORT), calls=2, spec=machine_spec("h200")), {"bytes": 4.8e8})
    text = profile_text({"launches": 2, "ncu": ncu})
    lines = [line for line in text.splitlines() if "ncu" in line]
    assert len(lines) == 3
    assert "2 launches of 2 kernels" in lines[0] and "2.00x the minimal" in lines[0]
    assert GEMM[:40] in lines[1] and "50% of its compute-bound floor" in lines[1] and "SM 64% of peak" in lines[1]
    assert SOFTMAX in lines[2] and "80% of its memory-bound floor" in lines[2] and "DRAM 81% of peak" in lines[2]
    assert "ncu" not in profile_text({"launches": 2, "ncu_error": "ncu not found"})
