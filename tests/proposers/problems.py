"""Small problem files written on the fly, in KernelBench form, for the rewrite tests."""
from __future__ import annotations

import pathlib
import textwrap

from proposers.rewrites.problem import Problem

HEADER = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n"


def make_problem(tmp: pathlib.Path, name: str, model_src: str, inputs: str, init: str = "[]",
                 sizes: str = "", scales: str = "{}") -> Problem:
    """A problem file ``name.py`` under ``tmp`` with ``Model`` from ``model_src``."""
    src = (HEADER + textwrap.dedent(sizes) + "\n\n" + textwrap.dedent(model_src).strip() + "\n\n\n"
           f"def get_inputs():\n    return {inputs}\n\n\n"
           f"def get_init_inputs():\n    return {init}\n\n\nSCALES = {scales}\n")
    path = tmp / f"{name}.py"
    path.write_text(src)
    return Problem.from_path(path)
