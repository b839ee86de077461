"""The prompts of the three roles. A request is a static prefix (the rules, then the problem and the machine model:
the same for every call on one problem and hardware class, so it is cached by the API) and a dynamic part (parents
with their speedups and profiles, recent failures, guidance, and the task).

The rules say what the verifier rejects and why, so that the model does not waste a candidate on it; they do not
decide anything: only the verifier does.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

RULES = """\
You write faster drop-in replacements for PyTorch modules. A problem file defines `Model`, `get_inputs()` and
`get_init_inputs()`. You answer with one complete Python module that defines `class ModelNew(nn.Module)` taking the
same constructor arguments as `Model` and computing the same outputs from the same inputs, faster on the named
hardware. Write the whole module in one ```python block; explanations, if any, go outside it.

Backends you may be asked for:
- torch: plain PyTorch operations (re-expressing the computation, fusing with algebra, better ops);
- triton: `@triton.jit` kernels launched from forward;
- cuda: CUDA C++ compiled with `torch.utils.cpp_extension.load_inline(cuda_sources=...)`;
- cpp: C++ (OpenMP allowed, via at::parallel_for) compiled with `load_inline(cpp_sources=...)`;
- metal: a Metal shader compiled with `torch.mps.compile_shader` (Apple GPUs).
Compiled extensions must be built with a `name` unique to the source and `build_directory` left to the default.
Optionally add `SPACE = {"NAME": [choices, ...]}` naming top-level integer constants of your module (tile sizes,
block sizes, unroll factors) with the values worth trying; a tuner then searches them. Keep each constant a
one-line assignment such as `BLOCK = 256`.

How every candidate is judged (only this verifier decides; these rules just save you a wasted attempt):
- static checks reject: threads, processes, subprocesses, CUDA streams, frame or gc inspection, sys.modules,
  patching imported modules or torch, ctypes, sockets, reading the environment, exit calls, writing files;
- the module runs in a sandbox with no network; a syntax error, an import error or a failing constructor is a
  compile error, an exception in forward a runtime error;
- outputs are compared with the reference on fresh random inputs of several domains (normal, large magnitude,
  negative, mixed sign) at float32 atol = rtol = 1e-4 (1e-2 for half precision): a lower-precision shortcut fails;
- outputs must be new dense tensors of the right shape, dtype and device, not aliasing inputs; inputs must not be
  modified; results must not be cached across calls (inputs are refilled in place at the same addresses); no work
  may continue after forward returns;
- timing is taken by the judge, against eager PyTorch and torch.compile, whichever is faster; a time below the
  roofline floor (the problem's bytes at peak bandwidth) is held as a suspect, not a win;
- skipping work because the test inputs happen to allow it (e.g. a clamp that is a no-op on them) is not a speedup.
"""

IDEATOR_TASK = """\
Task: ideas (round {round}).
Propose {n} distinct optimisation ideas for this problem on this hardware, most promising first, using the
parents' results and profiles and the failures above. One idea per line, each line starting with "- " and naming
the backend in brackets, e.g. "- [triton] fuse the three elementwise ops into one pass over the rows". Start the
line with "- [guidance]" as well when the idea follows the guidance from the person running the campaign.
Nothing else."""

CODER_TASK = """\
Task: code (attempt {attempt}).
Write `ModelNew` for the {backend} backend{idea_clause}.
Answer with the complete module in one ```python block."""

FIXER_TASK = """\
Task: fix (round {round} of {rounds}).
The candidate below was rejected with status `{status}`:
{reason}
{flags}
Write the corrected complete module in one ```python block. Keep the idea, fix the cause.

```python
{source}
```"""


@dataclasses.dataclass(frozen=True)
class Parent:
    candidate_id: str
    backend: str
    speedup: float | None
    source: str
    profile: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Failed:
    candidate_id: str
    status: str
    reason: str


def static_prefix(problem_id: str, problem_source: str, machine_text: str) -> tuple[str, ...]:
    """The cached part of every prompt for one problem on one hardware class."""
    return (RULES, f"Problem `{problem_id}` (reference implementation):\n```python\n{problem_source.strip()}\n```\n\n"
                   f"Target hardware:\n{machine_text}\n")


def profile_text(profile: Mapping[str, Any] | None) -> str:
    """A profile summary in a few lines: roofline position, then the top kernels by self device time."""
    if not profile:
        return "  (no profile)"
    lines = []
    line = profile.get("roofline") or {}        # evaluators.profiling on the machine model, else the check's figures
    ai = line.get("arithmetic_intensity", profile.get("arithmetic_intensity"))
    if profile.get("flops") is not None:
        lines.append(f"  FLOPs {profile['flops']:.3g}, minimal bytes {profile.get('bytes', 0):.3g}"
                     + (f", intensity {ai:.2f} FLOP/byte" if ai is not None else "")
                     + (f" (ridge {line['ridge_flops_per_byte']:.1f})" if line.get("ridge_flops_per_byte") else ""))
    frac = line.get("fraction_of_floor", profile.get("roofline_fraction"))
    if frac is not None:
        bound = line.get("bound") or profile.get("bound") or profile.get("floor_bound", "")
        lines.append(f"  reaches {frac:.1%} of its roofline floor ({line.get('floor_ms', profile.get('floor_ms', 0)):.4g}"
                     " ms" + (f", {bound}-bound" if bound else "") + ")")
    if profile.get("launches") is not None:
        lines.append(f"  kernel launches (ops on a CPU) per call: {profile['launches']:g}")
    if profile.get("allocated_bytes"):
        lines.append(f"  bytes allocated per call: {profile['allocated_bytes']:.3g}")
    if profile.get("profile_error"):
        lines.append(f"  no profile: {profile['profile_error']}")
    for op in (profile.get("top_ops") or [])[:5]:
        lines.append(f"  {op.get('name', '?')}: {op.get('self_device_ms', 0):.4g} ms self, {op.get('calls', 0)} calls")
    lines += ncu_lines(profile.get("ncu"))
    return "\n".join(lines) or "  (no profile)"


def ncu_lines(ncu: Mapping[str, Any] | None, top: int = 4) -> list[str]:
    """Nsight Compute's counters (``evaluators.ncu``) in a few lines: the totals per call, then the slowest kernels,
    each with its DRAM bytes, FLOPs, intensity and the share of its own roofline floor it reaches."""
    if not ncu or not ncu.get("totals"):
        return []

    def figures(r: Mapping[str, Any]) -> str:
        text = f"{r.get('duration_ms', 0):.4g} ms, DRAM {r.get('dram_bytes', 0):.3g} B, {r.get('flops', 0):.3g} FLOPs"
        if r.get("arithmetic_intensity") is not None:
            text += f" ({r['arithmetic_intensity']:.2f} FLOP/B)"
        if r.get("fraction_of_floor") is not None:
            text += f", {r['fraction_of_floor']:.0%} of its {r.get('bound', '')}-bound floor"
        return text

    t = ncu["totals"]
    head = f"  ncu counters per call, {t.get('launches', 0):g} launches of {t.get('kernels', 0)} kernels: {figures(t)}"
    if t.get("dram_over_minimal") is not None:
        head += f"; DRAM bytes {t['dram_over_minimal']:.2f}x the minimal"
    lines = [head]
    for r in (ncu.get("rows") or [])[:top]:
        extra = "".join(f", {label} {r[key]:.0f}% of peak" for key, label in
                        (("sm_throughput_pct", "SM"), ("dram_throughput_pct", "DRAM")) if r.get(key) is not None)
        lines.append(f"  ncu kernel {str(r.get('name', '?'))[:80]}: {r.get('launches', 0):g}x, {figures(r)}{extra}")
    return lines


def _history(parents: Sequence[Parent], failures: Sequence[Failed], guidance: Sequence[str],
             show_source: int = 1) -> str:
    parts = []
    if parents:
        parts.append("Parents so far (verified; speedup over the faster of eager and torch.compile):")
        for i, p in enumerate(parents):
            sp = f"{p.speedup:.3f}x" if p.speedup is not None else "not timed"
            parts.append(f"- {p.candidate_id[:12]} [{p.backend}] {sp}\n{profile_text(p.profile)}")
            if i < show_source:
                parts.append(f"```python\n{p.source.strip()}\n```")
    else:
        parts.append("No verified candidate yet: start from the reference.")
    if failures:
        parts.append("Recent failures:")
        parts.extend(f"- {f.candidate_id[:12]} {f.status}: {' '.join(f.reason.split())[:300]}" for f in failures)
    if guidance:
        parts.append("Guidance from the person running the campaign (follow it):")
        parts.extend(f"- {g}" for g in guidance)
    return "\n".join(parts)


def ideator_prompt(parents, failures, guidance, n: int, round: int = 1) -> str:
    return _history(parents, failures, guidance) + "\n\n" + IDEATOR_TASK.format(n=n, round=round)


def coder_prompt(parents, failures, guidance, *, backend: str, idea: str, attempt: int) -> str:
    clause = f", implementing this idea: {idea}" if idea else ", with the optimisation you judge most promising"
    return _history(parents, failures, guidance) + "\n\n" + CODER_TASK.format(backend=backend, idea_clause=clause,
                                                                             attempt=attempt)


def fixer_prompt(source: str, status: str, reason: str, flags: Sequence[str], *, round: int, rounds: int) -> str:
    flag_text = ("Static findings:\n" + "\n".join(f"- {f}" for f in flags)) if flags else ""
    return FIXER_TASK.format(round=round, rounds=rounds, status=status, reason=" ".join(reason.split())[:2000],
                             flags=flag_text, source=source.strip())


def parse_ideas(text: str, backends: Sequence[str]) -> list[dict[str, Any]]:
    """``[{"idea", "backend", "from_guidance"}]`` from the ideator's bullet lines; a backend not offered is
    replaced by the first offered one."""
    ideas = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(("- ", "* ")):
            continue
        body = line[2:].strip()
        tags = []
        while body.startswith("["):
            end = body.find("]")
            if end < 0:
                break
            tags.append(body[1:end].strip().lower())
            body = body[end + 1:].strip()
        if not body:
            continue
        backend = next((t for t in tags if t in backends), backends[0])
        ideas.append({"idea": body, "backend": backend, "from_guidance": "guidance" in tags})
    return ideas


def short_json(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=str)
