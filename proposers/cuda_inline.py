"""Inline CUDA C++ for candidates: built with ``load_inline`` for the running device's architecture, cached by source
hash and architecture.

A candidate is a standalone file, so the loader is code that a template (or the LLM coder) embeds: ``LOADER`` is
that code, and this module runs the same code for the project's own use and tests. ``_ks_cuda_load`` names the
extension ``ks_cu_<key>`` and builds it in ``<build_root>/<key>``, where the key hashes the sources, the exported
functions, the flags and the target (``sm_90`` on an H200, ``sm_120`` on an RTX 6000 Blackwell): equal sources for
the same target share one build, and the same source for another GPU gets its own. ``ARCH_OF_CLASS`` maps the
cluster's hardware classes to their compute capability, so a proposer can render for a class without its device.
"""
from __future__ import annotations

import re

LOADER = r'''
import hashlib as _ks_hashlib
import os as _ks_os


def _ks_cuda_arch(capability=None):
    """The -gencode flag for a compute capability (the current device's by default): sm_90 for (9, 0); with an
    ``a`` suffix, the architecture-specific target (sm_90a: wgmma, setmaxnreg)."""
    if capability is None:
        import torch
        capability = torch.cuda.get_device_capability()
    major, minor = int(capability[0]), int(capability[1])
    suffix = capability[2] if len(capability) > 2 else ""
    target = f"{major}{minor}{suffix}"
    return target, f"-gencode=arch=compute_{target},code=sm_{target}"


def _ks_cuda_key(cuda_src, cpp_src, functions, target, flags=()):
    h = _ks_hashlib.sha256()
    for part in (cuda_src, cpp_src, ",".join(functions), target, " ".join(flags)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


_KS_CUDA_BUILT = {}


def _ks_cuda_load(cuda_src, cpp_src, functions, build_root=None, capability=None, flags=("-O3",)):
    """The extension module for these sources on this architecture, built once per key."""
    target, gencode = _ks_cuda_arch(capability)
    key = _ks_cuda_key(cuda_src, cpp_src, functions, target, flags)
    if key in _KS_CUDA_BUILT:
        return _KS_CUDA_BUILT[key]
    from torch.utils.cpp_extension import load_inline
    path = None
    if build_root:
        path = _ks_os.path.join(build_root, key)
        _ks_os.makedirs(path, exist_ok=True)
    mod = load_inline(name=f"ks_cu_{key}", cpp_sources=[cpp_src], cuda_sources=[cuda_src], functions=list(functions),
                      build_directory=path, extra_cuda_cflags=[*flags, gencode], verbose=False)
    _KS_CUDA_BUILT[key] = mod
    return mod
'''

exec(compile(LOADER, __file__ + ":LOADER", "exec"), globals())   # one definition for candidates and the project

ARCH_OF_CLASS: dict[str, tuple[int, int]] = {
    "a100": (8, 0), "l40s": (8, 9), "h100": (9, 0), "h200": (9, 0), "rtx6000-blackwell": (12, 0),
}


def capability_of_class(hardware: str) -> tuple[int, int]:
    """The compute capability of a CUDA hardware class (``h200``, ``cuda-sm90``...)."""
    h = hardware.lower()
    if h in ARCH_OF_CLASS:
        return ARCH_OF_CLASS[h]
    m = re.fullmatch(r"cuda-sm(\d+)(\d)", h)
    if m:
        return int(m.group(1)), int(m.group(2))
    raise ValueError(f"no CUDA architecture known for hardware class {hardware!r}; "
                     f"known: {', '.join(sorted(ARCH_OF_CLASS))} or cuda-sm<XY>")


def cuda_arch(capability=None) -> tuple[str, str]:
    """(target, -gencode flag) for a compute capability; see ``LOADER``."""
    return _ks_cuda_arch(capability)  # noqa: F821  (defined by LOADER)


def build_key(cuda_src: str, cpp_src: str, functions, target: str, flags=()) -> str:
    return _ks_cuda_key(cuda_src, cpp_src, functions, target, flags)  # noqa: F821


def load(cuda_src: str, cpp_src: str, functions, build_root: str | None = None, capability=None, flags=("-O3",)):
    """Build (once per key) and import the extension; needs nvcc and a CUDA device unless ``capability`` is given."""
    return _ks_cuda_load(cuda_src, cpp_src, functions, build_root, capability, flags)  # noqa: F821


def candidate_prelude() -> str:
    """The loader as module-level code of a candidate (``_ks_cuda_load(...)`` is then callable in it)."""
    return LOADER.strip("\n") + "\n"


__all__ = ["ARCH_OF_CLASS", "LOADER", "build_key", "candidate_prelude", "capability_of_class", "cuda_arch", "load"]
