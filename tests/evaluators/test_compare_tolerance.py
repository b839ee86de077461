"""compare() accepts what is within the policy's tolerance and rejects the rest with a reason that names the output;
inputs_unchanged() sees any change of an input's bits."""
from __future__ import annotations

import math

import pytest
import torch

from evaluators.compare import compare, inputs_unchanged
from evaluators.policy import VerifyPolicy

POLICY = VerifyPolicy()


def check(out, ref, device: str = "cpu", devices=None, override=None):
    devices = devices if devices is not None else [str(t.device) for t in out]
    return compare(out, ref, devices, device, POLICY, override)


def ones(*shape, dtype=torch.float32):
    return torch.ones(*shape, dtype=dtype)


def bumped(t: torch.Tensor, index: int, by: float) -> torch.Tensor:
    """A copy of ``t`` with one element moved by ``by`` (computed in float64, rounded once to t's dtype)."""
    out = t.clone()
    flat = out.view(-1)
    flat[index] = torch.tensor(float(flat[index].double()) + by, dtype=t.dtype)
    return out


def test_identical_outputs_pass_with_zero_error():
    ref = [torch.randn(8, 8), torch.randn(3)]
    c = check([t.clone() for t in ref], ref)
    assert c.ok and c.reason == ""
    assert c.max_abs_err == 0 and c.max_rel_err == 0 and c.rel_fro_err == 0


def test_error_just_under_atol_plus_rtol_passes():
    # ref of ones: rms 1, so the bound is atol*1 + rtol*1 = 2e-4
    ref = [ones(64)]
    c = check([bumped(ref[0], 5, 1.5e-4)], ref)
    assert c.ok, c.reason
    assert c.max_abs_err == pytest.approx(1.5e-4, rel=1e-3)


def test_error_just_over_atol_plus_rtol_fails_naming_the_output():
    ref = [ones(64), ones(64)]
    c = check([ref[0].clone(), bumped(ref[1], 5, 2.5e-4)], ref)
    assert not c.ok
    assert c.reason.startswith("output 1:") and "1 of 64 elements outside tolerance" in c.reason
    assert c.max_abs_err == pytest.approx(2.5e-4, rel=1e-3)


def test_relative_tolerance_scales_with_the_reference():
    # |ref| = 1000 everywhere: rms 1000, bound 1e-4*1000 + 1e-4*1000 = 0.2
    ref = [torch.full((16,), 1000.0)]
    assert check([bumped(ref[0], 3, 0.15)], ref).ok
    c = check([bumped(ref[0], 3, 0.25)], ref)
    assert not c.ok and c.reason.startswith("output 0:")


def test_first_failing_output_is_the_one_named():
    ref = [ones(4), ones(4), ones(4)]
    c = check([ref[0].clone(), bumped(ref[1], 0, 1.0), bumped(ref[2], 0, 1.0)], ref)
    assert c.reason.startswith("output 1:")


def test_nan_where_the_reference_has_nan_passes():
    ref = [torch.tensor([1.0, math.nan, 3.0])]
    assert check([torch.tensor([1.0, math.nan, 3.0])], ref).ok


def test_nan_where_the_reference_has_none_fails():
    ref = [torch.tensor([1.0, 2.0, 3.0])]
    c = check([torch.tensor([1.0, math.nan, 3.0])], ref)
    assert not c.ok and c.reason.startswith("output 0:") and "NaN or Inf" in c.reason


def test_a_number_where_the_reference_has_nan_fails():
    c = check([torch.tensor([1.0, 2.0])], [torch.tensor([1.0, math.nan])])
    assert not c.ok and "NaN or Inf" in c.reason


@pytest.mark.parametrize("out", [[1.0, -math.inf], [1.0, 1e30], [1.0, math.nan]], ids=["sign", "finite", "nan"])
def test_inf_must_match_the_reference_exactly(out):
    ref = [torch.tensor([1.0, math.inf])]
    c = check([torch.tensor(out)], ref)
    assert not c.ok and "NaN or Inf" in c.reason
    assert check([torch.tensor([1.0, math.inf])], ref).ok


def test_inf_where_the_reference_is_finite_fails():
    c = check([torch.tensor([1.0, math.inf])], [torch.tensor([1.0, 2.0])])
    assert not c.ok and "NaN or Inf" in c.reason


def test_shape_mismatch_names_both_shapes():
    c = check([torch.zeros(4, 3)], [torch.zeros(3, 4)])
    assert not c.ok and c.reason == "output 0 has shape (4, 3), expected (3, 4)"


def test_dtype_mismatch_is_rejected_even_when_values_agree():
    c = check([torch.ones(4, dtype=torch.float64)], [torch.ones(4)])
    assert not c.ok and c.reason == "output 0 has dtype torch.float64, expected torch.float32"


def test_device_mismatch_names_the_device():
    ref = [torch.ones(2), torch.ones(2)]
    c = check([torch.ones(2), torch.ones(2)], ref, device="cpu", devices=["cpu", "cuda:0"])
    assert not c.ok and c.reason == "output 1 is on cuda:0, expected cpu"


@pytest.mark.parametrize("n_out", [0, 1, 3])
def test_output_count_mismatch_is_rejected(n_out):
    ref = [torch.ones(2), torch.ones(2)]
    c = check([torch.ones(2)] * n_out, ref)
    assert not c.ok and c.reason == f"returned {n_out} outputs, the reference returns 2"
    assert c.max_abs_err == math.inf


def test_near_constant_output_against_a_tiny_reference_fails_on_the_frobenius_bound():
    g = torch.Generator().manual_seed(0)
    ref = [torch.randn(1000, generator=g) * 1e-6]
    c = check([torch.zeros(1000)], ref)   # every element is within atol of a reference this small
    assert not c.ok
    assert c.reason.startswith("output 0: relative Frobenius error")
    assert c.rel_fro_err == pytest.approx(1.0)


def test_frobenius_error_is_recorded_for_a_passing_output():
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(1000, generator=g)
    out = ref + 1e-6 * torch.randn(1000, generator=g)
    c = check([out], [ref])
    assert c.ok
    assert 0 < c.rel_fro_err < 1e-5


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool])
def test_integer_and_bool_outputs_need_an_exact_match(dtype):
    ref = torch.tensor([0, 1, 1, 0, 1], dtype=dtype)
    assert check([ref.clone()], [ref]).ok
    out = ref.clone()
    out[2] = 0
    c = check([out], [ref])
    assert not c.ok and c.reason == "output 0: 1 of 5 elements differ (exact match required)"


def test_large_integers_are_compared_exactly_not_through_floats():
    ref = torch.tensor([2**53 + 1], dtype=torch.int64)
    assert not check([torch.tensor([2**53], dtype=torch.int64)], [ref]).ok


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tolerance_is_1e_2(dtype):
    # ref of ones: bound 1e-2*1 + 1e-2*1 = 2e-2; the float32 bound would be 2e-4
    ref = [ones(64, dtype=dtype)]
    within = bumped(ref[0], 0, 1.5e-2)
    assert check([within], ref).ok
    assert not check([within.float()], [ref[0].float()]).ok, "float32 must keep the tighter 1e-4"
    beyond = bumped(ref[0], 0, 3.2e-2)
    c = check([beyond], ref)
    assert not c.ok and "atol 0.01, rtol 0.01" in c.reason


def test_problem_tolerance_override_applies():
    ref = [ones(8)]
    out = [bumped(ref[0], 0, 1e-3)]
    assert not check(out, ref).ok
    assert check(out, ref, override={"atol": 1e-3, "rtol": 1e-3}).ok


def test_empty_outputs_compare_equal():
    assert check([torch.empty(0, 3)], [torch.empty(0, 3)]).ok


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_outputs_are_compared_on_both_parts(dtype):
    ref = torch.tensor([1 + 1j, 2 + 2j], dtype=dtype)
    assert check([ref.clone()], [ref]).ok
    c = check([torch.tensor([1 + 5j, 2 - 7j], dtype=dtype)], [ref])
    assert not c.ok and c.reason.startswith("output 0:")


def test_all_zero_reference_accepts_rounding_noise_inside_atol():
    c = check([torch.full((1000,), 1e-9)], [torch.zeros(1000)])
    assert c.ok, c.reason


def test_constant_output_against_an_all_zero_reference_beyond_atol_fails():
    assert not check([torch.full((1000,), 1e-3)], [torch.zeros(1000)]).ok


# --- inputs_unchanged ---------------------------------------------------------------------------------------------

def test_bit_identical_inputs_pass_including_nan():
    x = torch.tensor([1.0, math.nan, -0.0, math.inf])
    before = [x, 3, torch.arange(4)]
    assert inputs_unchanged(before, [x.clone(), 3, torch.arange(4)]) is None


def test_a_single_flipped_element_is_detected():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(256, 256, generator=g)
    after = x.clone()
    after[100, 7] = torch.nextafter(after[100, 7], torch.tensor(math.inf))
    assert inputs_unchanged([torch.ones(1), x], [torch.ones(1), after]) == "input 1 was modified in place"


def test_sign_of_zero_and_nan_payload_changes_are_detected():
    z = torch.tensor([0.0])
    assert inputs_unchanged([z], [torch.tensor([-0.0])]) == "input 0 was modified in place"
    nan_a = torch.tensor([0x7FC00000], dtype=torch.int32).view(torch.float32)
    nan_b = torch.tensor([0x7FC00001], dtype=torch.int32).view(torch.float32)
    assert inputs_unchanged([nan_a], [nan_b]) == "input 0 was modified in place"


def test_changed_shape_dtype_or_count_of_inputs_is_detected():
    x = torch.ones(4)
    assert inputs_unchanged([x], [torch.ones(2, 2)]) == "input 0 changed shape or type"
    assert inputs_unchanged([x], [torch.ones(4, dtype=torch.float64)]) == "input 0 changed shape or type"
    assert inputs_unchanged([x], [x.tolist()]) == "input 0 changed shape or type"
    assert inputs_unchanged([x], [x, x]) == "the number of inputs changed"
