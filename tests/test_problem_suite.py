"""Checks of the bundled problem suite under experiments/problems/.

Each problem file is imported standalone with importlib (no project code), the way any KernelBench-style loader
would: it must define Model, get_inputs, get_init_inputs and SCALES["large"], run on its default sizes with finite
outputs, and its large scale must actually change the inputs. Large sizes are only ever built on the meta device,
so no memory is allocated for them.
"""
from __future__ import annotations

import ast
import importlib.util
import pathlib

import pytest
import torch

PROBLEMS_DIR = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "problems"
PROBLEM_FILES = sorted(PROBLEMS_DIR.glob("level*/*.py"))
KNOWN_PROBES = {"scaled_normal", "large_magnitude", "negative", "mixed_sign"}
ALLOWED_IMPORTS = {"torch", "math"}
MIN_PER_LEVEL = {"level1": 12, "level2": 10, "level3": 8}
LARGE_BYTES_LIMIT = 8 * 1024**3   # inputs + outputs + weights at SCALES["large"]


def _load(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(f"_suite_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)


def _ids(paths):
    return [f"{p.parent.name}/{p.stem}" for p in paths]


def test_suite_counts_per_level():
    counts = {level: 0 for level in MIN_PER_LEVEL}
    for path in PROBLEM_FILES:
        counts[path.parent.name] = counts.get(path.parent.name, 0) + 1
    for level, minimum in MIN_PER_LEVEL.items():
        assert counts[level] >= minimum, f"{level} has {counts[level]} problems, expected at least {minimum}"


def test_problem_ids_are_unique_across_levels():
    stems = [p.stem for p in PROBLEM_FILES]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    assert not duplicates, f"problem ids used in more than one level: {duplicates}"


@pytest.mark.parametrize("path", PROBLEM_FILES, ids=_ids(PROBLEM_FILES))
def test_problem_imports_only_torch_and_math(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    docstring = ast.get_docstring(tree)
    assert docstring and "\n" not in docstring.strip(), "the module docstring must be one line"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
        else:
            continue
        assert roots <= ALLOWED_IMPORTS, f"line {node.lineno} imports {sorted(roots - ALLOWED_IMPORTS)}"


@pytest.mark.parametrize("path", PROBLEM_FILES, ids=_ids(PROBLEM_FILES))
def test_problem_runs_at_default_size(path):
    mod = _load(path)
    for name in ("Model", "get_inputs", "get_init_inputs", "SCALES"):
        assert hasattr(mod, name), f"missing {name}"
    assert isinstance(mod.SCALES, dict) and isinstance(mod.SCALES.get("large"), dict), "SCALES['large'] missing"
    probes = getattr(mod, "PROBES", None)
    if probes is not None:
        assert isinstance(probes, tuple) and set(probes) <= KNOWN_PROBES, f"unknown PROBES {probes}"

    outputs = []
    for _ in range(2):   # twice from the same seed: construction and inputs must be deterministic
        torch.manual_seed(0)
        model = mod.Model(*mod.get_init_inputs())
        inputs = mod.get_inputs()
        assert isinstance(inputs, (list, tuple)) and inputs, "get_inputs must return a non-empty list"
        for t in _tensors(inputs):
            if t.is_floating_point():
                assert t.dtype == torch.float32, f"float inputs must be float32, got {t.dtype}"
        with torch.no_grad():
            outputs.append(model(*inputs))

    out = list(_tensors(outputs[0]))
    assert out, "forward returned no tensor"
    for t in out:
        if t.is_floating_point():
            assert torch.isfinite(t).all(), "non-finite output at the default size"
    for a, b in zip(out, _tensors(outputs[1])):
        assert torch.equal(a, b), "two runs from torch.manual_seed(0) differ"


@pytest.mark.parametrize("path", PROBLEM_FILES, ids=_ids(PROBLEM_FILES))
def test_large_scale_applies_and_fits(path):
    default_mod = _load(path)
    with torch.device("meta"):
        default_shapes = [tuple(t.shape) for t in _tensors(default_mod.get_inputs())]

    mod = _load(path)   # a fresh module object, so the override does not leak into other tests
    overrides = mod.SCALES["large"]
    for name, value in overrides.items():
        assert hasattr(mod, name), f"SCALES['large'] overrides {name!r}, which is not a module-level name"
        setattr(mod, name, value)
    with torch.device("meta"):
        model = mod.Model(*mod.get_init_inputs())
        inputs = mod.get_inputs()
        large_shapes = [tuple(t.shape) for t in _tensors(inputs)]
        assert large_shapes != default_shapes, "SCALES['large'] does not change any input's shape"
        with torch.no_grad():
            outputs = model(*inputs)   # shapes only: the large scale must be self-consistent

    total = sum(t.numel() * t.element_size() for t in _tensors(inputs))
    total += sum(t.numel() * t.element_size() for t in _tensors(outputs))
    total += sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert total < LARGE_BYTES_LIMIT, f"large scale holds {total / 1024**3:.2f} GiB of inputs, outputs and weights"
