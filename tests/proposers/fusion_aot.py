"""Compile a generated candidate's Triton kernels for an NVIDIA target without a GPU (Triton's own ptxas), printing
one JSON line per kernel: its name and whether the PTX uses wgmma. Run as a script in a process without
TRITON_INTERPRET:  python fusion_aot.py CANDIDATE.py CAPABILITY"""
from __future__ import annotations

import importlib.util
import json
import re
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource


def _constexpr(src: str, kernel: str, name: str) -> object:
    m = re.search(rf"{kernel}\[.*?\b{name}=([^,\n]+)", src)
    if m is None:
        raise SystemExit(f"no launch value for {kernel}.{name}")
    try:
        return eval(m.group(1).rstrip(")"), {})
    except (NameError, SyntaxError, TypeError):   # sized at run time (min(..., next_power_of_2(L))): a typical size
        return 64


def main() -> None:
    path, cap = sys.argv[1], int(sys.argv[2])
    spec = importlib.util.spec_from_file_location("aot_candidate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    src = open(path).read()
    for name, fn in vars(mod).items():
        if not isinstance(fn, triton.runtime.jit.JITFunction) or not re.fullmatch(r"_ks_seg\d+_\w+", name):
            continue
        sig, consts = {}, {}
        for p in fn.params:
            if p.is_constexpr:
                sig[p.name], consts[p.name] = "constexpr", _constexpr(src, name, p.name)
            elif p.name.endswith("_ptr"):
                sig[p.name] = "*fp32"
            elif re.fullmatch(r"s\d+", p.name):
                sig[p.name] = "fp32"
            else:
                sig[p.name] = "i32"
        k = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", cap, 32),
                           options={"num_warps": 4, "num_stages": 3})
        print(json.dumps({"kernel": name, "wgmma": "wgmma" in k.asm["ptx"], "mma": "mma" in k.asm["ptx"]}))


if __name__ == "__main__":
    main()
