"""Code out of a model's reply: one fenced block, several, an unclosed one, or none at all.

The rule: among the fenced blocks, the last one that parses and defines a top-level ``ModelNew`` wins (a reply that
shows a draft and then a corrected version means the later one). With no such block, the Python blocks are joined
in order (helpers in one block, the model in the next). With no fence at all, the text from its first ``import``,
``from`` or ``class`` line is taken, trailing prose trimmed until it parses. Anything else is ``NoCode`` with a
reason the fixer is told.
"""
from __future__ import annotations

import ast
import builtins
import re

from evaluators.problem import BadInput, check_candidate_source

_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.M | re.S)
_PY_TAGS = {"", "python", "py", "python3"}
_CODE_START = re.compile(r"^(import |from \S+ import |class |@)", re.M)


class NoCode(ValueError):
    """The reply holds no usable ``ModelNew`` module; the message is fit to send back to the model."""


def _defines_model_new(source: str) -> bool:
    try:
        check_candidate_source(source)
    except BadInput:
        return False
    return True


def _defined(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _with_helpers(body: str, earlier: list[str]) -> str:
    """``body``, preceded by the earlier blocks that define names it uses but does not define itself."""
    tree = ast.parse(body)
    missing = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    missing -= _defined(tree) | set(dir(builtins))
    parts = []
    for block in earlier:
        try:
            names = _defined(ast.parse(block))
        except SyntaxError:
            continue
        if names & missing:
            parts.append(block.strip())
    joined = "\n\n".join([*parts, body.strip()]) + "\n"
    return joined if parts and _defines_model_new(joined) else body.strip() + "\n"


def extract_code(reply: str) -> str:
    """The ``ModelNew`` module in ``reply``; raises ``NoCode`` saying what was wrong."""
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(reply)]
    for i in range(len(blocks) - 1, -1, -1):
        if _defines_model_new(blocks[i][1]):
            return _with_helpers(blocks[i][1], [b for t, b in blocks[:i] if t in _PY_TAGS])
    python = [body for tag, body in blocks if tag in _PY_TAGS]
    if len(python) > 1:
        joined = "\n\n".join(b.strip() for b in python) + "\n"
        if _defines_model_new(joined):
            return joined
    if not blocks:
        m = _CODE_START.search(reply)
        if m:
            lines = reply[m.start():].rstrip().splitlines()
            for end in range(len(lines), max(0, len(lines) - 40), -1):
                text = "\n".join(lines[:end]) + "\n"
                if _defines_model_new(text):
                    return text
    if any(tag in _PY_TAGS for tag, _ in blocks):
        body = [b for t, b in blocks if t in _PY_TAGS][-1]
        try:
            ast.parse(body)
        except SyntaxError as e:
            raise NoCode(f"the Python block does not parse: {e.msg} at line {e.lineno}") from None
        raise NoCode("the Python block defines no top-level class ModelNew(nn.Module)")
    raise NoCode("the reply holds no ```python block with a class ModelNew(nn.Module)")


def detect_backend(source: str) -> str:
    """The backend a module is written for, from what it uses (a ``proposers.base.BACKENDS`` value)."""
    if re.search(r"compile_shader|\bmetal\b", source, re.I):
        return "metal"
    if re.search(r"^\s*(import triton|from triton)", source, re.M):
        return "triton"
    if "load_inline" in source or "cpp_extension" in source:
        return "cuda" if re.search(r"cuda_sources\s*=", source) else "cpp"
    if "torch.compile" in source:
        return "compile"
    return "torch"


def space_manifest(source: str) -> dict[str, list]:
    """The ``SPACE = {"NAME": [choices...]}`` manifest of tunables, when the module has one whose every name is a
    top-level constant of the module; else ``{}``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    space: dict[str, list] = {}
    constants: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name == "SPACE":
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    return {}
                if isinstance(value, dict):
                    space = {str(k): list(v) for k, v in value.items() if isinstance(v, (list, tuple)) and v}
            else:
                constants.add(name)
    return {k: v for k, v in space.items() if k in constants}


def apply_point(source: str, point: dict) -> str:
    """``source`` with each top-level constant named in ``point`` set to its value (the first assignment of it)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    done: set[str] = set()
    for node in sorted(tree.body, key=lambda n: -n.lineno):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in point and node.lineno == node.end_lineno):
            name = node.targets[0].id
            line = lines[node.lineno - 1]
            indent = line[:len(line) - len(line.lstrip())]
            lines[node.lineno - 1] = f"{indent}{name} = {point[name]!r}\n"
            done.add(name)
    missing = set(point) - done
    if missing:
        raise ValueError(f"no one-line top-level assignment of {', '.join(sorted(missing))}")
    return "".join(lines)
