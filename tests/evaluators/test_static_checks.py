"""The AST checks catch each forbidden construct on the right line and leave honest candidates alone."""
from __future__ import annotations

import textwrap

import pytest

from evaluators.static_checks import Finding, check_source, find_model_new


def findings(source: str) -> list[Finding]:
    return check_source(textwrap.dedent(source))


def rules_at(source: str) -> set[tuple[str, int]]:
    return {(f.rule, f.line) for f in findings(source)}


# Each case: a snippet, the rule it must trigger and the line it must name. Line 1 is the first line after dedent.
CAUGHT = [
    # threads, executors, event loops
    ("import threading\n", "thread", 1),
    ("import torch\nfrom threading import Thread\n", "thread", 2),
    ("import _thread\n", "thread", 1),
    ("from concurrent.futures import ThreadPoolExecutor\n", "thread", 1),
    ("import multiprocessing as mp\n", "thread", 1),
    ("import torch.multiprocessing\n", "thread", 1),
    ("import asyncio\n", "thread", 1),
    ("import torch\n\ndef f(x):\n    return torch.jit.fork(g, x)\n", "thread", 4),
    # processes
    ("import subprocess\n", "subprocess", 1),
    ("import os\nos.system('ls')\n", "subprocess", 2),
    ("import os\nos.popen('ls')\n", "subprocess", 2),
    ("import os\npid = os.fork()\n", "subprocess", 2),
    ("import os\nos.spawnl(os.P_NOWAIT, '/bin/ls')\n", "subprocess", 2),
    ("import os\nos.execv('/bin/ls', [])\n", "subprocess", 2),
    ("from os import system\n", "subprocess", 1),
    ("import os\ngetattr(os, 'system')('ls')\n", "subprocess", 2),
    ("import posix\nposix.system('ls')\n", "subprocess", 2),
    ("import pty\n", "subprocess", 1),
    # streams
    ("import torch\ns = torch.cuda.Stream()\n", "stream", 2),
    ("import torch\n\ndef f(s):\n    with torch.cuda.stream(s):\n        pass\n", "stream", 4),
    ("import torch\ntorch.cuda.set_stream(s)\n", "stream", 2),
    ("import torch\ns = torch.Stream()\n", "stream", 2),
    ("from torch.cuda import Stream\n", "stream", 1),
    ("import torch\ns = getattr(torch, 'cuda').Stream()\n", "stream", 2),
    ("import torch\ntc = torch.cuda\ns = tc.Stream()\n", "stream", 3),
    # frames and code objects
    ("import sys\nf = sys._getframe(1)\n", "frame_inspection", 2),
    ("import inspect\n", "frame_inspection", 1),
    ("def f(frame):\n    return frame.f_back.f_locals\n", "frame_inspection", 2),
    ("def f(frame):\n    return frame.f_globals\n", "frame_inspection", 2),
    ("try:\n    1 / 0\nexcept Exception as e:\n    fr = e.__traceback__.tb_frame\n", "frame_inspection", 4),
    ("def f():\n    pass\nf.__code__ = g.__code__\n", "frame_inspection", 3),
    ("import sys\nsys.settrace(None)\n", "frame_inspection", 2),
    # gc and the import system
    ("import gc\n", "gc", 1),
    ("import torch\n\ndef f():\n    import gc\n    return gc.get_objects()\n", "gc", 4),
    ("import sys\nref = sys.modules['__main__']\n", "sys_modules", 2),
    ("from sys import modules\n", "sys_modules", 1),
    ("import __main__\n", "sys_modules", 1),
    # dynamic code and builtins
    ("import builtins\n", "dynamic_code", 1),
    ("x = __builtins__\n", "dynamic_code", 1),
    ("g = globals()\n", "dynamic_code", 1),
    ("v = vars(object)\n", "dynamic_code", 1),
    ("os_mod = __import__('os')\n", "dynamic_code", 1),
    ("import importlib\n", "dynamic_code", 1),
    ("exec('x = 1')\n", "dynamic_code", 1),
    ("y = eval('1 + 1')\n", "dynamic_code", 1),
    ("code = compile('1', 'f', 'eval')\n", "dynamic_code", 1),
    ("import pickle\n", "dynamic_code", 1),
    ("classes = object.__subclasses__()\n", "dynamic_code", 1),
    ("import os\nname = 'sys' + 'tem'\nfn = getattr(os, name)\n", "dynamic_code", 3),
    ("from os import *\n", "dynamic_code", 1),
    # patches of imported modules
    ("import torch\ntorch.matmul = lambda a, b: a\n", "module_patch", 2),
    ("import torch\ntorch.Tensor.add = lambda a, b: a\n", "module_patch", 2),
    ("import time\ntime.perf_counter = lambda: 0.0\n", "module_patch", 2),
    ("import torch\ntorch.backends.cuda.matmul.allow_tf32 = True\n", "module_patch", 2),
    ("import torch.nn.functional as F\nF.softmax = None\n", "module_patch", 2),
    ("from torch.nn import functional as F\nF.relu = None\n", "module_patch", 2),
    ("import torch\nt = torch\nt.matmul = None\n", "module_patch", 3),
    ("import torch\nsetattr(torch, 'matmul', None)\n", "module_patch", 2),
    ("import torch\ndelattr(torch.cuda, 'synchronize')\n", "module_patch", 2),
    ("import torch\ndel torch.cuda.synchronize\n", "module_patch", 2),
    ("import torch\ntorch.__dict__['matmul'] = None\n", "module_patch", 2),
    ("import torch\ntorch.cuda.Event.elapsed_time = None\n", "module_patch", 2),
    ("import torch\nobject.__setattr__(torch, 'mm', None)\n", "module_patch", 2),
    ("import torch\nlib = torch.library.Library('aten', 'IMPL')\n", "module_patch", 2),
    ("import torch\n\nclass M:\n    def f(self):\n        torch.cuda.synchronize = print\n", "module_patch", 5),
    # native code
    ("import ctypes\n", "ctypes", 1),
    ("from cffi import FFI\n", "ctypes", 1),
    # network
    ("import socket\n", "network", 1),
    ("import urllib.request\n", "network", 1),
    ("from http import client\n", "network", 1),
    ("import requests\n", "network", 1),
    ("import ssl\n", "network", 1),
    # environment
    ("import os\nkey = os.environ['API_KEY']\n", "environment", 2),
    ("import os\nkey = os.environ.get('API_KEY')\n", "environment", 2),
    ("import os\nkey = os.getenv('API_KEY')\n", "environment", 2),
    ("import os\nos.putenv('A', 'B')\n", "environment", 2),
    ("from os import environ\n", "environment", 1),
    ("text = open('/proc/self/environ').read()\n", "environment", 1),
    # exits and signals
    ("import sys\nsys.exit(0)\n", "exit", 2),
    ("import os\nos._exit(0)\n", "exit", 2),
    ("exit()\n", "exit", 1),
    ("quit()\n", "exit", 1),
    ("import os\nos.kill(os.getpid(), 9)\n", "exit", 2),
    ("import signal\n", "exit", 1),
    ("raise SystemExit(0)\n", "exit", 1),
    ("import atexit\n", "exit", 1),
    # file writes
    ("f = open('out.txt', 'w')\n", "file_write", 1),
    ("f = open('out.txt', mode='a')\n", "file_write", 1),
    ("f = open('out.txt', 'x')\n", "file_write", 1),
    ("f = open('out.txt', 'r+')\n", "file_write", 1),
    ("def f(m):\n    return open('out.txt', m)\n", "file_write", 2),
    ("o = open\n", "file_write", 1),
    ("import pathlib\npathlib.Path('x').write_text('y')\n", "file_write", 2),
    ("import torch\ntorch.save({}, 'cache.pt')\n", "file_write", 2),
    # global torch settings
    ("import torch\ntorch.set_num_threads(1)\n", "global_settings", 2),
    ("import torch\ntorch.set_num_interop_threads(1)\n", "global_settings", 2),
    ("import torch\ntorch.set_float32_matmul_precision('medium')\n", "global_settings", 2),
    ("import torch\ntorch.set_default_dtype(torch.float16)\n", "global_settings", 2),
    ("import torch\ntorch.use_deterministic_algorithms(True)\n", "global_settings", 2),
]


@pytest.mark.parametrize(("source", "rule", "line"), CAUGHT, ids=[f"{r}-{i}" for i, (_, r, _) in enumerate(CAUGHT)])
def test_forbidden_construct_is_caught_on_its_line(source: str, rule: str, line: int) -> None:
    found = findings(source)
    assert (rule, line) in {(f.rule, f.line) for f in found}, found


def test_message_names_the_line_and_what_to_do() -> None:
    source = "import torch\n\n\ndef f():\n    import threading\n    threading.Thread(target=f).start()\n"
    found = [f for f in findings(source) if f.line == 6]
    assert len(found) == 1
    message = found[0].message
    assert message.startswith("line 6: ")
    assert "threading.Thread" in message
    assert "calling thread" in message


def test_findings_are_ordered_by_line() -> None:
    found = findings("import gc\nimport socket\nimport ctypes\n")
    assert [f.line for f in found] == [1, 2, 3]


HONEST_PLAIN = """
import torch
import torch.nn as nn
import torch.nn.functional as F


class ModelNew(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.scale = dim ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        out[:] = F.softmax(self.proj(x) * self.scale, dim=-1)
        y = getattr(F, "gelu")(out)
        return y.contiguous()
"""

HONEST_LOAD_INLINE = '''
import os
import torch
from torch.utils.cpp_extension import load_inline

cpp_source = """
#include <torch/extension.h>
#include <thread>
// std::thread, system("ls"), getenv("HOME") and exit(0) are C++ here, not Python
torch::Tensor add_one(torch::Tensor x) { return x + 1; }
"""

module = load_inline(
    name="add_one",
    cpp_sources=cpp_source,
    functions=["add_one"],
    extra_cflags=["-O3"],
    build_directory=os.path.join(os.path.dirname(__file__), "build"),
    verbose=False,
)


class ModelNew(torch.nn.Module):
    def forward(self, x):
        with open(os.path.join(os.path.dirname(__file__), "table.txt")) as f:
            f.read()
        return module.add_one(x)
'''

HONEST_COMPILE = """
import torch


def fused(x, y):
    return torch.relu(x @ y) + 1


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fn = torch.compile(fused, mode="max-autotune-no-cudagraphs")

    def forward(self, x, y):
        self.eval()
        return self.fn(x, y)
"""

HONEST_TRITON = """
import torch
import triton
import triton.language as tl


@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(axis=0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)


class ModelNew(torch.nn.Module):
    def forward(self, x, y):
        out = torch.empty_like(x)
        n = out.numel()
        grid = lambda meta: (triton.cdiv(n, meta["BLOCK"]),)
        add_kernel[grid](x, y, out, n, BLOCK=1024)
        torch.cuda.synchronize()
        return out
"""

HONEST_SHADOWING = """
import torch


def compile(graph):
    return graph


class ModelNew(torch.nn.Module):
    def forward(self, x, eval=None):
        return compile(x) if eval is None else eval(x)
"""


@pytest.mark.parametrize("source", [HONEST_PLAIN, HONEST_LOAD_INLINE, HONEST_COMPILE, HONEST_TRITON, HONEST_SHADOWING],
                         ids=["plain_torch", "load_inline", "torch_compile", "triton_jit", "own_names"])
def test_honest_candidate_has_no_findings(source: str) -> None:
    assert findings(source) == []


def test_syntax_error_propagates() -> None:
    with pytest.raises(SyntaxError):
        check_source("def f(:\n")


def test_model_new_found_as_class_or_assignment() -> None:
    assert find_model_new(HONEST_PLAIN)
    assert find_model_new("import torch\nModelNew = torch.nn.Identity\n")
    assert find_model_new("try:\n    import x\nexcept ImportError:\n    pass\nelse:\n    class ModelNew:\n        pass\n")


def test_model_new_missing_or_nested_is_not_found() -> None:
    assert not find_model_new("class Model:\n    pass\n")
    assert not find_model_new("def make():\n    class ModelNew:\n        pass\n    return ModelNew\n")
    assert not find_model_new("x = 'ModelNew'\n")


def test_unbound_setattr_on_own_object_is_allowed() -> None:
    source = """
    import torch.nn as nn

    class ModelNew(nn.Module):
        def __init__(self):
            super().__init__()
            nn.Module.__setattr__(self, "scale", 2.0)
    """
    assert findings(source) == []


def test_bound_setattr_on_a_module_is_caught() -> None:
    assert ("module_patch", 2) in rules_at("import torch\ntorch.__setattr__('matmul', None)\n")


def test_a_name_rebound_to_other_values_is_not_an_alias() -> None:
    source = """
    import torch

    def f():
        out = torch.float32
        return out

    def g(obj):
        out = obj
        out.value = 3
        return out
    """
    assert findings(source) == []
