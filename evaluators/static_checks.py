"""AST checks on untrusted candidate source.

A static check is a second line of defence: every threat it names is also caught dynamically. It errs on the side
of flagging, but it must accept honest backends: ``torch.compile``, ``torch.utils.cpp_extension.load_inline`` and
Triton. Only Python is scanned; C++ or CUDA source inside string literals is not.

Names are resolved through import statements and simple aliases (``t = torch``), so ``import torch.nn.functional
as F; F.softmax = f`` is caught as a patch of ``torch.nn.functional.softmax``. Resolution ignores scopes: a name
bound by an import anywhere counts as that import everywhere.
"""
from __future__ import annotations

import ast
import dataclasses

from evaluators.static_rules import (ADVICE, ATTRIBUTE_RULES, CHECKED_AT_CALL, MODE_CHARS, NO_COMPUTED_GETATTR,
                                     OPEN_FUNCTIONS, SENSITIVE_BUILTINS, SETTING_PREFIXES, WRITE_MODE_CHARS,
                                     match_pattern)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One forbidden construct: a short rule id, the 1-based line and a message a person can act on."""

    rule: str
    line: int
    message: str


def _normalise_module(name: str) -> str:
    """``posix`` and ``nt`` are the platform modules behind ``os``; treat them as ``os``."""
    head, _, rest = name.partition(".")
    if head in ("posix", "nt"):
        return "os" + ("." + rest if rest else "")
    return name


def _const_str(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the module binds anywhere, other than by import: defs, classes, arguments and stores."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
    return names


class _Checker(ast.NodeVisitor):
    def __init__(self, tree: ast.Module) -> None:
        self.aliases: dict[str, str] = {}
        self.findings: dict[tuple[str, int], Finding] = {}
        self._collect_imports(tree)
        self.local_names = _bound_names(tree) - set(self.aliases)
        self._collect_aliases(tree)
        self.call_funcs = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}

    # ---- name resolution ----

    def _collect_imports(self, tree: ast.AST) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    module = _normalise_module(alias.name)
                    if alias.asname:
                        self.aliases[alias.asname] = module
                    else:
                        # "import a.b" binds "a"
                        head = module.split(".")[0]
                        self.aliases[alias.name.split(".")[0]] = head
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                module = _normalise_module(node.module)
                for alias in node.names:
                    if alias.name != "*":
                        self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"

    def _collect_aliases(self, tree: ast.AST) -> None:
        """Simple assignments of imported names (``t = torch``, ``mm = torch.matmul``) become aliases too.

        Only names whose every binding is the same imported name are aliases, so that a local ``out = torch.float32``
        in one function does not turn an unrelated ``out.value = 3`` elsewhere into a module patch.
        """
        stores: dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                stores[node.id] = stores.get(node.id, 0) + 1
        for _ in range(3):  # enough for short chains such as a = torch; b = a.cuda
            found: dict[str, list[str]] = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target, value = node.targets[0], node.value
                elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                    target, value = node.target, node.value
                else:
                    continue
                if isinstance(target, ast.Name) and target.id not in self.aliases:
                    qual = self.qualname(value)
                    if qual is not None and not qual.startswith("builtins."):
                        found.setdefault(target.id, []).append(qual)
            added = [name for name, quals in found.items()
                     if len(quals) == stores.get(name, 0) and len(set(quals)) == 1]
            for name in added:
                self.aliases[name] = found[name][0]
                self.local_names.discard(name)
            if not added:
                break

    def _builtin(self, node: ast.AST) -> str | None:
        """The builtin a bare name refers to, when the candidate has not bound that name itself."""
        if isinstance(node, ast.Name) and node.id in SENSITIVE_BUILTINS \
                and node.id not in self.aliases and node.id not in self.local_names:
            return node.id
        return None

    def qualname(self, node: ast.AST) -> str | None:
        """Dotted name of an expression built from imported names, attributes and constant getattr."""
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            builtin = self._builtin(node)
            return None if builtin is None else f"builtins.{builtin}"
        if isinstance(node, ast.Attribute):
            base = self.qualname(node.value)
            return None if base is None else f"{base}.{node.attr}"
        if isinstance(node, ast.Call) and self._builtin(node.func) == "getattr" and len(node.args) >= 2:
            attr = _const_str(node.args[1])
            base = self.qualname(node.args[0])
            if attr is not None and base is not None:
                return f"{base}.{attr}"
        return None

    def import_root(self, node: ast.AST) -> str | None:
        """The imported name an attribute, subscript or getattr chain hangs from, if any."""
        while True:
            if isinstance(node, ast.Name):
                return self.aliases.get(node.id)
            if isinstance(node, (ast.Attribute, ast.Subscript)):
                node = node.value
            elif isinstance(node, ast.Call) and self._builtin(node.func) == "getattr" and node.args:
                node = node.args[0]
            elif isinstance(node, ast.Starred):
                node = node.value
            else:
                return None

    # ---- reporting ----

    def flag(self, rule: str, node: ast.AST, what: str, name: str | None = None) -> None:
        line = getattr(node, "lineno", 0)
        key = (rule, line)
        if key in self.findings:
            return
        if name and name.startswith("builtins."):
            name = name[len("builtins."):]
        shown = f" ({name})" if name else ""
        self.findings[key] = Finding(rule, line, f"line {line}: {what}{shown}; {ADVICE[rule]}")

    def check_name(self, qualname: str, node: ast.AST) -> None:
        match = match_pattern(qualname)
        if match is not None:
            self.flag(match[0], node, match[1], qualname)

    # ---- visitors ----

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.check_name(_normalise_module(alias.name), node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return
        module = _normalise_module(node.module)
        self.check_name(module, node)
        for alias in node.names:
            if alias.name == "*":
                self.flag("dynamic_code", node, "star import hides which names are used", f"from {module} import *")
            else:
                self.check_name(f"{module}.{alias.name}", node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id == "__builtins__":
            self.flag("dynamic_code", node, "reaches the builtins", "__builtins__")
        elif isinstance(node.ctx, ast.Load):
            builtin = self._builtin(node)
            if builtin in CHECKED_AT_CALL:
                # open, setattr and delattr are judged by their arguments in visit_Call; passed around uncalled,
                # they could be used in ways the checker cannot see
                if builtin != "getattr" and id(node) not in self.call_funcs:
                    rule = "file_write" if builtin == "open" else "module_patch"
                    self.flag(rule, node, f"refers to {builtin} without calling it, which hides how it is used",
                              builtin)
            elif builtin is not None:
                self.check_name(f"builtins.{builtin}", node)
            elif node.id in self.aliases:
                self.check_name(self.aliases[node.id], node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in ATTRIBUTE_RULES:
            rule, what = ATTRIBUTE_RULES[node.attr]
            self.flag(rule, node, what, node.attr)
        qual = self.qualname(node)
        if qual is not None:
            self.check_name(qual, node)
        root = self.import_root(node)
        if root is not None:
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                self._flag_patch(node, qual or root)
            elif node.attr == "__dict__" or (node.attr in ("__setattr__", "__delattr__")
                                             and not self._sets_on_own_object(node)):
                self.flag("module_patch", node, f"reaches {node.attr} of an imported module", qual or root)
        self.generic_visit(node)

    def _sets_on_own_object(self, func: ast.Attribute) -> bool:
        """True for ``nn.Module.__setattr__(self, ...)``: an unbound call whose target is a local object."""
        call = self.call_funcs.get(id(func))
        if call is None or not call.args:
            return False
        first = call.args[0]
        return isinstance(first, ast.Name) and first.id not in self.aliases and first.id not in SENSITIVE_BUILTINS

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            root = self.import_root(node)
            if root is not None:
                self._flag_patch(node, self.qualname(node.value) or root)
        self.generic_visit(node)

    def _flag_patch(self, node: ast.AST, name: str) -> None:
        if match_pattern(name) is not None:
            return  # already reported under its own rule, e.g. os.environ[...] = ... as environment
        if name.startswith(SETTING_PREFIXES):
            self.flag("module_patch", node, "changes a global torch setting", name)
        else:
            verb = "deletes" if isinstance(getattr(node, "ctx", None), ast.Del) else "assigns to"
            self.flag("module_patch", node, f"{verb} an attribute of an imported module", name)

    def visit_Call(self, node: ast.Call) -> None:
        builtin = self._builtin(node.func)
        qual = self.qualname(node.func)
        if qual in OPEN_FUNCTIONS:
            self._check_open(node, qual, node.args[1] if len(node.args) > 1 else None,
                             node.args[0] if node.args else None)
        elif isinstance(node.func, ast.Attribute) and qual is None:
            self._check_method(node)
        if builtin in ("setattr", "delattr") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Starred):
                self.flag("module_patch", node, f"calls {builtin} with unpacked arguments", builtin)
            elif self.import_root(first) is not None:
                self.flag("module_patch", node, f"calls {builtin} on an imported module",
                          self.qualname(first) or self.import_root(first))
        if builtin == "getattr" and self.qualname(node) is not None:
            self.check_name(self.qualname(node), node)  # getattr(os, "system") is os.system
        if builtin == "getattr" and len(node.args) >= 2 and _const_str(node.args[1]) is None:
            root = self.import_root(node.args[0])
            if root is not None and root.split(".")[0] in NO_COMPUTED_GETATTR:
                self.flag("dynamic_code", node, "reads an attribute by a computed name", f"getattr({root}, ...)")
        if isinstance(node.func, ast.Attribute) and node.func.attr in ("__setattr__", "__delattr__") and node.args \
                and (isinstance(node.args[0], ast.Starred) or self.import_root(node.args[0]) is not None):
            # object.__setattr__(torch, "mm", f) sets an attribute behind the normal syntax
            self.flag("module_patch", node, f"calls {node.func.attr} on an imported module",
                      self.qualname(node.args[0]) or node.func.attr)
        if qual is not None and qual.startswith("torch.library.") and self._mentions_aten(node):
            self.flag("module_patch", node, "overrides a built-in aten operator", qual)
        self.generic_visit(node)

    def _check_open(self, node: ast.Call, qual: str, mode_node: ast.AST | None, path_node: ast.AST | None) -> None:
        for kw in node.keywords:
            if kw.arg == "mode":
                mode_node = kw.value
            elif kw.arg is None:
                self.flag("file_write", node, "opens a file with unpacked arguments", qual)
        if mode_node is not None:
            mode = _const_str(mode_node)
            if mode is None:
                self.flag("file_write", node, "opens a file with a computed mode", qual)
            elif WRITE_MODE_CHARS & set(mode):
                self.flag("file_write", node, f"opens a file for writing with mode {mode!r}", qual)
        path = _const_str(path_node)
        if path is not None and path.startswith("/proc"):
            self.flag("environment", node, "reads process information", path)

    def _check_method(self, node: ast.Call) -> None:
        """Calls on objects the checker cannot resolve, such as ``pathlib.Path(p).write_text(...)``."""
        attr = node.func.attr  # type: ignore[union-attr]
        if attr in ("write_text", "write_bytes", "tofile"):
            self.flag("file_write", node, "writes a file", attr)
        elif attr == "open":
            # Path(p).open("w"): the first argument is a mode only if it looks like one, not a file name
            first = _const_str(node.args[0]) if node.args else None
            mode_node = node.args[0] if first is not None and first and set(first) <= MODE_CHARS else None
            self._check_open(node, "open", mode_node, None)

    def _mentions_aten(self, node: ast.Call) -> bool:
        for arg in list(node.args) + [kw.value for kw in node.keywords]:
            text = _const_str(arg)
            if text is not None and (text == "aten" or text.startswith("aten::")):
                return True
        return False

    def visit_Raise(self, node: ast.Raise) -> None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(exc, ast.Name) and exc.id in ("SystemExit", "KeyboardInterrupt") \
                and exc.id not in self.local_names and exc.id not in self.aliases:
            self.flag("exit", node, "raises an exception that ends the process", exc.id)
        self.generic_visit(node)


def check_source(source: str) -> list[Finding]:
    """Forbidden constructs in candidate source, ordered by line. Raises SyntaxError on invalid Python."""
    tree = ast.parse(source)
    checker = _Checker(tree)
    checker.visit(tree)
    return sorted(checker.findings.values(), key=lambda f: (f.line, f.rule))


def find_model_new(source: str) -> bool:
    """True if the module binds ``ModelNew`` at top level (class, assignment or import), without running it."""
    tree = ast.parse(source)
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        stmt = pending.pop()
        if isinstance(stmt, ast.ClassDef) and stmt.name == "ModelNew":
            return True
        targets: list[ast.expr] = []
        if isinstance(stmt, ast.Assign):
            targets = list(stmt.targets)
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
            targets = [stmt.target]
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name.split(".")[0]) == "ModelNew" for a in stmt.names):
                return True
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name) and name.id == "ModelNew":
                    return True
        # bindings inside module-level if/try/with blocks are still module-level
        if isinstance(stmt, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            for field in ("body", "orelse", "finalbody"):
                pending.extend(getattr(stmt, field, []))
            for handler in getattr(stmt, "handlers", []):
                pending.extend(handler.body)
    return False
