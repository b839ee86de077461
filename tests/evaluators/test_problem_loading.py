"""Problems load in KernelBench form with optional scales; bad files give one actionable line; candidates are
checked without running a line of them."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from evaluators.problem import BadInput, check_candidate_source, load_problem_module

KERNELBENCH = """\
import torch
import torch.nn as nn

N = 4


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.relu(x)


def get_inputs():
    return [torch.randn(N, 3)]


def get_init_inputs():
    return []
"""

SCALED = KERNELBENCH + 'SCALES = {"large": {"N": 64}, "huge": {"N": 1024}}\n'


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def assert_one_line_naming(err: BadInput, path: Path) -> None:
    message = str(err)
    assert message.strip() and "\n" not in message, f"not one line: {message!r}"
    assert str(path) in message, f"does not name {path}: {message!r}"


def test_kernelbench_file_without_scales_or_probes_loads_with_defaults(tmp_path):
    path = write(tmp_path, "relu.py", KERNELBENCH)
    mod, info = load_problem_module(str(path))
    assert info.problem_id == "relu"
    assert info.scale == "default" and info.overrides == {}
    assert info.probes is None and info.tolerance is None
    (x,) = mod.get_inputs()
    assert x.shape == (4, 3)
    assert torch.equal(mod.Model(*mod.get_init_inputs())(x), torch.relu(x))


def test_scale_overrides_reach_get_inputs(tmp_path):
    path = write(tmp_path, "scaled.py", SCALED)
    mod, info = load_problem_module(str(path), "large")
    assert info.overrides == {"N": 64}
    assert mod.get_inputs()[0].shape == (64, 3)
    default_mod, _ = load_problem_module(str(path))
    assert default_mod.get_inputs()[0].shape == (4, 3), "loading another scale must not leak into a fresh load"


def test_unknown_scale_names_the_valid_ones(tmp_path):
    path = write(tmp_path, "scaled.py", SCALED)
    with pytest.raises(BadInput) as e:
        load_problem_module(str(path), "medium")
    assert_one_line_naming(e.value, path)
    assert "'medium'" in str(e.value)
    assert "default, huge, large" in str(e.value)


def test_unknown_scale_on_a_file_without_scales_offers_default(tmp_path):
    path = write(tmp_path, "relu.py", KERNELBENCH)
    with pytest.raises(BadInput, match="valid: default$"):
        load_problem_module(str(path), "large")


def test_missing_file_is_bad_input_naming_it(tmp_path):
    path = tmp_path / "nowhere.py"
    with pytest.raises(BadInput) as e:
        load_problem_module(str(path))
    assert_one_line_naming(e.value, path)
    assert "not found" in str(e.value)


def test_syntax_error_is_bad_input_naming_file_and_line(tmp_path):
    path = write(tmp_path, "broken.py", KERNELBENCH + "\ndef get_more(:\n    pass\n")
    with pytest.raises(BadInput) as e:
        load_problem_module(str(path))
    assert_one_line_naming(e.value, path)
    assert "line 22" in str(e.value)


def test_missing_get_inputs_is_bad_input_naming_file_and_name(tmp_path):
    path = write(tmp_path, "noinputs.py", KERNELBENCH.replace("def get_inputs", "def make_inputs"))
    with pytest.raises(BadInput) as e:
        load_problem_module(str(path))
    assert_one_line_naming(e.value, path)
    assert "get_inputs" in str(e.value)


def test_problem_that_fails_while_loading_is_bad_input(tmp_path):
    path = write(tmp_path, "raises.py", KERNELBENCH + "raise ValueError('no such size')\n")
    with pytest.raises(BadInput) as e:
        load_problem_module(str(path))
    assert_one_line_naming(e.value, path)
    assert "ValueError: no such size" in str(e.value)


def test_problem_failing_with_a_multiline_error_still_gives_one_line(tmp_path):
    path = write(tmp_path, "raises.py", KERNELBENCH + "raise RuntimeError('shape mismatch\\n  got 3\\n  want 4')\n")
    with pytest.raises(BadInput) as e:
        load_problem_module(str(path))
    assert_one_line_naming(e.value, path)


def test_problem_module_is_not_registered_in_sys_modules(tmp_path):
    path = write(tmp_path, "unlisted.py", KERNELBENCH)
    mod, _ = load_problem_module(str(path))
    assert mod.__name__ not in sys.modules
    assert not [name for name, m in list(sys.modules.items()) if m is mod]
    assert not [name for name, m in list(sys.modules.items())
                if getattr(m, "__file__", None) == str(path.resolve())]


def test_check_candidate_source_never_executes_the_candidate(tmp_path):
    marker = tmp_path / "ran.txt"
    source = textwrap.dedent(f"""\
        import torch.nn as nn
        open({str(marker)!r}, "w").write("ran")

        class ModelNew(nn.Module):
            open({str(marker)!r}, "w").write("ran")

            def forward(self, x):
                return x
    """)
    check_candidate_source(source, "cand.py")
    assert not marker.exists()


def test_candidate_without_model_new_is_rejected_naming_the_file(tmp_path):
    source = "import torch.nn as nn\n\nclass Model(nn.Module):\n    pass\n"
    with pytest.raises(BadInput) as e:
        check_candidate_source(source, "/some/where/cand.py")
    assert "/some/where/cand.py" in str(e.value) and "ModelNew" in str(e.value)
    assert "\n" not in str(e.value)


def test_candidate_with_a_syntax_error_is_rejected_without_running(tmp_path):
    marker = tmp_path / "ran.txt"
    source = f"open({str(marker)!r}, 'w')\nclass ModelNew(:\n    pass\n"
    with pytest.raises(BadInput, match="syntax error at line 2"):
        check_candidate_source(source, "cand.py")
    assert not marker.exists()


@pytest.mark.parametrize("source", [
    "from elsewhere import ModelNew\n",
    "import torch.nn as nn\nModelNew = nn.Identity\n",
    "import torch.nn as nn\nModelNew: type = nn.Identity\n",
])
def test_candidate_may_define_model_new_by_import_or_assignment(source):
    check_candidate_source(source, "cand.py")


@pytest.mark.parametrize("extra,scale", [
    pytest.param('SCALES = {"large": 64}\n', "large", id="scale_not_a_dict"),
    pytest.param('SCALES = ["large"]\n', "large", id="scales_not_a_dict"),
    pytest.param('PROBES = ("negativ",)\n', "default", id="probe_misspelt"),
    pytest.param('PROBES = "negative"\n', "default", id="probes_a_bare_string"),
    pytest.param('TOLERANCE = 0.01\n', "default", id="tolerance_not_a_dict"),
    pytest.param('TOLERANCE = {"atoll": 1e-3}\n', "default", id="tolerance_key_misspelt"),
])
def test_malformed_scales_probes_or_tolerance_are_bad_input(tmp_path, extra, scale):
    path = write(tmp_path, "declared.py", KERNELBENCH + extra)
    with pytest.raises(BadInput) as e:
        load_problem_module(str(path), scale)
    assert_one_line_naming(e.value, path)


def test_well_formed_probes_and_tolerance_are_recorded(tmp_path):
    extra = 'PROBES = ("negative", "mixed_sign")\nTOLERANCE = {"atol": 1e-3, "rtol": 2e-3}\n'
    _, info = load_problem_module(str(write(tmp_path, "declared.py", KERNELBENCH + extra)))
    assert info.probes == ("negative", "mixed_sign")
    assert info.tolerance == {"atol": 1e-3, "rtol": 2e-3}
