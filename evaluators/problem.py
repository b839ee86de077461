"""Loading problems (trusted, KernelBench form) and checking candidate files (untrusted, never executed here).

A problem file defines ``Model``, ``get_inputs`` and ``get_init_inputs``, with its sizes as module-level names.
It may define ``SCALES = {"large": {name: value, ...}}`` (module-level overrides for sizes where GPU kernels, not
launch overhead, dominate), ``PROBES`` (the domain probes that apply) and ``TOLERANCE = {"atol": .., "rtol": ..}``.
Files without them, such as KernelBench's own, load with the defaults.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import os
import types
from pathlib import Path
from typing import Any

REQUIRED_PROBLEM_NAMES = ("Model", "get_inputs", "get_init_inputs")


class BadInput(Exception):
    """A problem or candidate file the user must fix. The message is one line that says what to fix."""


@dataclasses.dataclass(frozen=True)
class ProblemInfo:
    path: str
    problem_id: str
    source: str
    scale: str
    overrides: dict[str, Any]
    probes: tuple[str, ...] | None
    tolerance: dict[str, float] | None

    @property
    def source_hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


def read_source(path: str | os.PathLike[str], what: str) -> str:
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{what} file not found: {p} (check the path)")
    if not p.is_file():
        raise BadInput(f"{what} path is not a file: {p}")
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{what} file {p} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise BadInput(f"cannot read {what} file {p}: {_one_line(e)}") from None


def _parse(source: str, path: str, what: str) -> ast.Module:
    try:
        return ast.parse(source, filename=path)
    except SyntaxError as e:
        where = f" at line {e.lineno}" if e.lineno else ""
        raise BadInput(f"{what} {path} has a syntax error{where}: {_one_line(e.msg)}; fix it and retry") from None
    except ValueError as e:   # some Python versions report NUL bytes in the source this way
        raise BadInput(f"{what} {path} is not Python source ({_one_line(e)}); fix it and retry") from None
    except (MemoryError, RecursionError):
        raise BadInput(f"{what} {path} is nested too deeply for Python's parser; simplify it and retry") from None


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    names.add(t.id)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                names.add((a.asname or a.name).split(".")[0])
    return names


def check_candidate_source(source: str, path: str = "<candidate>") -> None:
    """Raise BadInput unless the source parses and defines ``ModelNew`` at module level. Nothing is executed."""
    from evaluators.static_checks import find_model_new
    _parse(source, path, "candidate")
    if not find_model_new(source):
        raise BadInput(f"candidate {path} defines no top-level ModelNew; add a class ModelNew(nn.Module) "
                       "with the same constructor arguments as Model")


def check_problem_source(source: str, path: str) -> None:
    tree = _parse(source, path, "problem")
    missing = [n for n in REQUIRED_PROBLEM_NAMES if n not in _top_level_names(tree)]
    if missing:
        raise BadInput(f"problem {path} lacks {', '.join(missing)}; a problem defines Model, get_inputs "
                       "and get_init_inputs (KernelBench form)")


def load_problem_module(path: str, scale: str = "default") -> tuple[types.ModuleType, ProblemInfo]:
    """Execute a problem file in a fresh module (not registered in sys.modules) and apply a scale's overrides."""
    source = read_source(path, "problem")
    check_problem_source(source, path)
    problem_id = Path(path).stem
    mod = types.ModuleType(f"kswarm_problem_{problem_id}")
    mod.__file__ = str(Path(path).resolve())
    try:
        exec(compile(source, str(path), "exec"), mod.__dict__)
    except (Exception, SystemExit) as e:  # the user's problem file failed (or called exit) while loading
        raise BadInput(f"problem {path} failed to load: {type(e).__name__}: {_one_line(e)}") from None
    for name in REQUIRED_PROBLEM_NAMES:
        if not callable(getattr(mod, name, None)):
            raise BadInput(f"problem {path}: {name} is not callable")
    scales, probes, tol = _validated_options(mod, path)
    overrides: dict[str, Any] = {}
    if scale != "default":
        if scale not in scales:
            valid = ", ".join(["default", *sorted(scales)])
            raise BadInput(f"problem {path} has no scale {scale!r}; valid: {valid}")
        overrides = dict(scales[scale])
        unknown = [k for k in overrides if k not in mod.__dict__]
        if unknown:
            raise BadInput(f"problem {path}: SCALES[{scale!r}] overrides unknown names {unknown}")
        mod.__dict__.update(overrides)
    info = ProblemInfo(path=str(path), problem_id=problem_id, source=source, scale=scale, overrides=overrides,
                       probes=tuple(probes) if probes is not None else None,
                       tolerance=dict(tol) if tol else None)
    return mod, info


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _validated_options(mod: types.ModuleType, path: str) -> tuple[dict, Any, Any]:
    """SCALES, PROBES and TOLERANCE, checked: a typo must not silently switch a check off."""
    from evaluators.policy import PROBES as VALID_PROBES

    scales = getattr(mod, "SCALES", None) or {}
    if not isinstance(scales, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in scales.items()):
        raise BadInput(f"problem {path}: SCALES must map a scale name to a dict of module-level overrides, "
                       'e.g. SCALES = {"large": {"batch_size": 4096}}')
    probes = getattr(mod, "PROBES", None)
    if probes is not None:
        if not isinstance(probes, (tuple, list)) or not all(p in VALID_PROBES for p in probes):
            raise BadInput(f"problem {path}: PROBES must be a tuple of probe names from {', '.join(VALID_PROBES)}")
    tol = getattr(mod, "TOLERANCE", None)
    if tol is not None:
        if (not isinstance(tol, dict) or not set(tol) <= {"atol", "rtol", "fro"}
                or not all(isinstance(v, (int, float)) and v >= 0 for v in tol.values())):
            raise BadInput(f"problem {path}: TOLERANCE must be a dict with keys among atol, rtol, fro and "
                           "non-negative numbers")
    return scales, probes, tol
