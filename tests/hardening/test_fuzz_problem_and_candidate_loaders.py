"""Fuzzed problem and candidate files: the loaders and the trusted reference either work or raise the project's own
errors (``BadInput`` with one line, or a ``baseline_error`` rejection), never another exception."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluators.judge import Rejected, build_reference
from evaluators.problem import BadInput, check_candidate_source, load_problem_module
from evaluators.result import Status

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

HEADER = "import torch\nimport torch.nn as nn\n"
MODELS = [
    "class Model(nn.Module):\n    def forward(self, x):\n        return x * 2.0\n",
    "class Model(nn.Module):\n    def forward(self, x):\n        return (x + 1, x - 1)\n",
    "class Model(nn.Module):\n    def forward(self, x):\n        raise RuntimeError('forward fails\\non two lines')\n",
    "class Model(nn.Module):\n    def forward(self, x):\n        return 'not a tensor'\n",
    "class Model(nn.Module):\n    def forward(self, x):\n        return None\n",
    "class Model(nn.Module):\n    def __init__(self, *a):\n        raise ValueError('init fails')\n",
    "class Model:\n    def __call__(self, x):\n        return x\n",
    "Model = 3\n",
    "",
]
GET_INPUTS = [
    "def get_inputs():\n    return [torch.randn(8)]\n",
    "def get_inputs():\n    return [torch.randint(0, 5, (3,))]\n",
    "def get_inputs():\n    raise RuntimeError('no inputs')\n",
    "def get_inputs():\n    return ['a', 3]\n",
    "def get_inputs():\n    return 5\n",
    "def get_inputs():\n    return None\n",
    "def get_inputs():\n    return {'x': torch.randn(2)}\n",
    "def get_inputs():\n    return (torch.randn(2) for _ in range(1))\n",
    "get_inputs = [1]\n",
    "",
]
GET_INIT_INPUTS = [
    "def get_init_inputs():\n    return []\n",
    "def get_init_inputs():\n    return [3]\n",
    "def get_init_inputs():\n    raise KeyError('init inputs')\n",
    "def get_init_inputs():\n    return 5\n",
    "",
]
OPTIONS = [
    "", "SCALES = {'large': {'N': 16}}\nN = 8\n", "SCALES = {'large': 3}\n", "SCALES = [1]\n",
    "SCALES = {'large': {'unknown': 1}}\n", "PROBES = ('negative',)\n", "PROBES = ('nope',)\n", "PROBES = 3\n",
    "TOLERANCE = {'atol': 1e-3}\n", "TOLERANCE = {'atol': -1}\n", "TOLERANCE = {'tol': 1}\n",
    "raise ImportError('at import')\n", "raise SystemExit(3)\n", "exit()\n", "def f(:\n", "x = 1\x00\n",
    "x = " + "-" * 50_000 + "1\n", "x = " + "(" * 300 + ")" * 300 + "\n", "\ufeffy = 1\n",
]


def one_line(e: BaseException) -> str:
    text = str(e)
    assert text and "\n" not in text and "\r" not in text, text
    return text


def write(tmp: Path, name: str, source: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(source if isinstance(source, bytes) else source.encode("utf-8", "surrogatepass"))
    return path


def load_or_bad_input(path: Path, scale: str = "default"):
    try:
        return load_problem_module(str(path), scale)
    except BadInput as e:
        assert str(path) in one_line(e)
        return None


@FUZZ
@given(text=st.text(max_size=300))
def test_random_text_as_a_problem_is_loaded_or_bad_input(tmp_path: Path, text: str) -> None:
    load_or_bad_input(write(tmp_path, "random_problem.py", text))


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_as_a_problem_are_loaded_or_bad_input(tmp_path: Path, data: bytes) -> None:
    load_or_bad_input(write(tmp_path, "bytes_problem.py", data))


@FUZZ
@given(parts=st.tuples(st.sampled_from(MODELS), st.sampled_from(GET_INPUTS), st.sampled_from(GET_INIT_INPUTS),
                       st.lists(st.sampled_from(OPTIONS), max_size=2)),
       scale=st.sampled_from(["default", "large", "nope"]))
def test_assembled_problems_build_a_reference_or_fail_clearly(tmp_path: Path, parts, scale: str) -> None:
    model, inputs, init, options = parts
    path = write(tmp_path, "assembled.py", HEADER + model + inputs + init + "".join(options))
    if load_or_bad_input(path, scale) is None:
        return
    try:
        ref = build_reference(str(path), scale, "cpu", seed=0)
    except BadInput as e:
        one_line(e)
    except Rejected as e:
        assert e.status == Status.BASELINE_ERROR and str(e)
    else:
        assert ref.out_bytes >= 0 and isinstance(ref.model, (torch.nn.Module, object))


@FUZZ
@given(text=st.text(max_size=300))
def test_random_text_as_a_candidate_is_accepted_or_bad_input(text: str) -> None:
    try:
        check_candidate_source(text, "fuzzed.py")
    except BadInput as e:
        assert "fuzzed.py" in one_line(e)


CANDIDATE_SHAPES = [
    "class ModelNew(nn.Module):\n    pass\n", "ModelNew = Model\n", "def ModelNew():\n    pass\n",
    "if True:\n    class ModelNew: pass\n", "from x import ModelNew\n", "class ModelNew(:\n",
    "import torch as ModelNew\n", "ModelNew: int\n", "ModelNew += 1\n", "(ModelNew := 3)\n",
    "x = 1\x00\n", "x = " + "not " * 20_000 + "1\n", "x = " + "[" * 1000 + "]" * 1000 + "\n", "\ufeff",
    "@decorator\nclass ModelNew: pass\n", "async def ModelNew(): pass\n", "ModelNew, y = 1, 2\n",
]


@FUZZ
@given(parts=st.lists(st.sampled_from(CANDIDATE_SHAPES), min_size=1, max_size=3), junk=st.text(max_size=20))
def test_assembled_candidates_are_accepted_or_bad_input(parts, junk: str) -> None:
    source = HEADER + "".join(parts) + junk
    try:
        check_candidate_source(source, "assembled.py")
    except BadInput as e:
        assert "assembled.py" in one_line(e)


EXITS = "import sys\n"
EXITING_PROBLEMS = {
    "get_inputs": HEADER + MODELS[0] + "def get_inputs():\n    raise SystemExit(3)\n" + GET_INIT_INPUTS[0],
    "get_init_inputs": HEADER + MODELS[0] + GET_INPUTS[0] + "def get_init_inputs():\n    exit()\n",
    "Model.__init__": HEADER + EXITS + "class Model(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                      "        sys.exit('no model today')\n" + GET_INPUTS[0] + GET_INIT_INPUTS[0],
    "forward": HEADER + EXITS + "class Model(nn.Module):\n    def forward(self, x):\n        sys.exit(0)\n"
               + GET_INPUTS[0] + GET_INIT_INPUTS[0],
}


@pytest.mark.parametrize("where", EXITING_PROBLEMS)
def test_a_problem_that_exits_is_a_baseline_error(tmp_path: Path, where: str) -> None:
    path = write(tmp_path, "exits.py", EXITING_PROBLEMS[where])
    with pytest.raises(Rejected) as caught:
        build_reference(str(path), "default", "cpu", seed=0)
    assert caught.value.status == Status.BASELINE_ERROR
    assert "the problem called exit" in one_line(caught.value)
