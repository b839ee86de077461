"""How far the fx rewrites get on every KernelBench problem: traced, proposed, built, accepted, and why not.

    python experiments/rewrite_coverage.py scan   [--kernelbench ../shared/kernelbench] [--data DIR]
    python experiments/rewrite_coverage.py verify [--per-problem 1] [--time-cap S] [--data DIR]
    python experiments/rewrite_coverage.py table  [--out experiments/results/2026-12-02-rewrite-coverage.md]

``scan`` takes every problem of v0 and head, levels 1-3: its trace (complete, partial or none, with the reason),
the rewrite proposer's candidates for the CPU (how many, which rewrites) and, for v0, whether each graph-rewrite
candidate builds and runs one forward on the CPU at v0 sizes (torch.compile variants are not built: they are the
compiler's work, not a rewrite; nor are C++ fusion candidates, whose extension build takes minutes here). Head sizes are GPU-sized: a head problem is traced and proposed only, and its
"built" and "accepted" refer to the v0 problem of the same name where there is one. ``verify`` runs the first
candidate(s) of each v0 problem through the real verifier (``evaluators.pipeline.evaluate``, mode ``verify``, on
the CPU) until the time cap. Both append to ``DATA/*.jsonl`` and skip what is already there, so either may be
stopped and run again. ``table`` writes the Markdown table from what the two recorded.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from proposers.rewrites.problem import Problem, trace_problem_reason  # noqa: E402
from proposers.rewrites.proposer import RewritesProposer  # noqa: E402

DEFAULT_KB = REPO.parent / "shared" / "kernelbench"
DEFAULT_DATA = REPO / "runs" / "rewrite_coverage"
DEFAULT_OUT = REPO / "experiments" / "results" / "2026-12-02-rewrite-coverage.md"
log = logging.getLogger("rewrite_coverage")


@dataclasses.dataclass
class View:
    """The proposer's view of a problem with no history (what a campaign's first generation sees)."""

    problem_id: str
    problem_path: str
    hardware: str = "cpu"
    cache_dir: str | None = None
    cores: int = 1

    def best(self, k: int = 5):
        return []

    def failures(self, k: int = 20):
        return []


def problems(kb: Path) -> list[Path]:
    return sorted(kb.glob("*/level[123]/*.py"), key=lambda p: (p.parts[-3], p.parts[-2], _num(p.name)))


def _num(name: str) -> int:
    head = name.split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def _done(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out[row["problem"]] = row
    return out


def _append(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:240]


def _ops(traced) -> str:
    """The distinct operations of a traced graph, for the reason a rewrite found nothing."""
    names = []
    for n in traced.gm.graph.nodes:
        if n.op == "call_module":
            names.append(type(traced.gm.get_submodule(n.target)).__name__)
        elif n.op == "call_function":
            names.append(getattr(n.target, "__name__", str(n.target)))
        elif n.op == "call_method":
            names.append("." + n.target)
    skip = {"getattr", "getitem", ".size", ".view", ".reshape", ".contiguous", "size", ".dim"}
    kept = [n for n in dict.fromkeys(names) if n not in skip]
    return ", ".join(kept[:8]) + (" ..." if len(kept) > 8 else "")


def _build(problem: Problem, source: str) -> str:
    """'' when the candidate loads, is constructed and runs one forward on the CPU; else the reason."""
    import importlib.util
    import tempfile
    try:
        with tempfile.TemporaryDirectory(prefix="ks-cov-") as tmp:
            path = Path(tmp) / "candidate.py"
            path.write_text(source)
            spec = importlib.util.spec_from_file_location("_ks_cov_candidate", path)
            cand = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(cand)
            mod = problem.load()
            torch.manual_seed(0)
            model = cand.ModelNew(*mod.get_init_inputs())
            with torch.no_grad():
                model(*mod.get_inputs())
        return ""
    except Exception as e:  # the candidate is generated code: any failure is the finding
        return _one_line(e)


def scan(kb: Path, data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    out = data / "scan.jsonl"
    done = _done(out)
    cache = str(data / "build-cache")
    for path in problems(kb):
        rel = str(path.relative_to(kb))
        if rel in done:
            continue
        t0 = time.monotonic()
        problem = Problem.from_path(path)
        version, level = path.parts[-3], int(path.parts[-2][-1])
        row = {"problem": rel, "version": version, "level": level}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced, note = trace_problem_reason(problem)
            row["traced"] = "no" if traced is None else ("partial" if note else "yes")
            row["trace_note"] = note
            row["shapes_known"] = bool(traced and traced.shapes_known)
            cands = []
            try:
                cands = RewritesProposer(compile_limit=2).propose(View(path.stem, str(path), cache_dir=cache), 64)
            except Exception as e:  # a proposer bug is a finding, not a stop
                row["propose_error"] = _one_line(e)
            graph = [c for c in cands if any(r != "compile" for r in c.params["rewrites"])]
            row["candidates"] = len(cands)
            row["graph_candidates"] = len(graph)
            row["rewrites"] = sorted({r for c in graph for r in c.params["rewrites"] if r != "compile"})
            row["recipes"] = ["+".join(c.params["rewrites"]) for c in graph]
            if traced is not None and not graph:
                row["propose_reason"] = f"no rewrite pattern in the graph (ops: {_ops(traced)})"
            if version == "v0":
                eager = [c for c in graph if c.backend == "torch"]
                row["cpp_not_built"] = sum(1 for c in graph if c.backend == "cpp")
                fails = {}
                for c in eager:
                    reason = _build(problem, c.source)
                    if reason:
                        fails["+".join(c.params["rewrites"])] = reason
                row["built"] = [len(eager) - len(fails), len(eager)]
                row["build_failures"] = fails
                row["first"] = ["+".join(c.params["rewrites"]) for c in eager]
        row["seconds"] = round(time.monotonic() - t0, 2)
        _append(out, row)
        log.info("%s: traced %s, %d graph candidate(s) %s", rel, row["traced"], row["graph_candidates"],
                 row.get("built", ""))


def verify(kb: Path, data: Path, per_problem: int, time_cap: float, levels: tuple[int, ...] = (2, 3, 1)) -> None:
    from evaluators.pipeline import evaluate
    from evaluators.policy import EvalRequest
    scanned = _done(data / "scan.jsonl")
    out = data / "verify.jsonl"
    done = {(r["problem"], r["recipe"]) for r in _read_all(out)}
    start = time.monotonic()
    order = sorted(scanned.items(), key=lambda kv: (levels.index(kv[1]["level"]) if kv[1]["level"] in levels
                                                     else len(levels), _num(Path(kv[0]).name)))
    for rel, row in order:
        if row["version"] != "v0" or not row.get("first") or row["level"] not in levels:
            continue
        path = kb / rel
        cands = RewritesProposer(compile_limit=2).propose(
            View(path.stem, str(path), cache_dir=str(data / "build-cache")), 64)
        eager = [c for c in cands if c.backend == "torch" and any(r != "compile" for r in c.params["rewrites"])]
        for c in eager[:per_problem]:
            recipe = "+".join(c.params["rewrites"])
            if (rel, recipe) in done:
                continue
            if time.monotonic() - start > time_cap:
                log.info("time cap reached")
                return
            t0 = time.monotonic()
            res = evaluate(EvalRequest(problem_path=str(path), candidate_source=c.source, device="cpu",
                                       mode="verify", cache_dir=str(data / "eval-cache")))
            _append(out, {"problem": rel, "recipe": recipe, "status": res.status.value, "reason": res.reason,
                          "max_abs_err": res.max_abs_err, "seconds": round(time.monotonic() - t0, 1)})
            log.info("%s %s: %s", rel, recipe, res.status.value)


def _read_all(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


# What pays at head sizes on level 2/3, what was added and what was left out as inexact (written by hand from the
# traced graphs of head/level2 and head/level3; the problems each added rewrite applies to are listed from the scan).
ANALYSIS = """\
## Rewrites for KernelBench level 2/3 at head sizes

Added (exact for any weights and inputs, NaN/Inf included; declined when anything writes in place or an output
would alias an input):

- `reduce_identity`: a sum/mean/amax/amin/logsumexp/max/min over axes of size 1 returns its input. At head sizes
  these are tails of (1024, 1)-sized tensors, so the gain is the kernel launches: in level2/18 the whole model is a
  GEMV after `algebraic` folds the sum into the weight, and the four reductions after it were four more launches.
- `clone_elim`: `x.clone().detach()` read only by out-of-place ops reads `x`. level2/20 at head copies a
  16x64x32x64x64 float tensor (512 MiB read + 512 MiB written) for nothing.
- `pool_merge`: two non-overlapping pools of the same kind become one (MaxPool3d 2 then 2, or 2 then 3; AvgPool3d
  2 then 2): the intermediate (an eighth of the conv output, 32-128 MiB at head) is never written or read.

Already there and paying on these problems: `algebraic`/`reduce_reassoc` (level2/14 and 18: a 1024x8192 GEMM
becomes a GEMV; level2/51: the mean after the GEMM), `scale_bias_fold` (scales after a Linear/conv in level2/9, 32,
33, 35, 39, 48 ...).

Looked at and not added:

- BatchNorm folding: every level 2/3 BatchNorm is in training mode (no problem calls `eval()`), where it normalises
  with the batch's statistics and updates its running statistics; folding it is wrong for that mode.
- A per-feature scale before a training-mode BatchNorm (level2/33, 39) cancels only up to `eps`
  (`s*y` normalises with `sqrt(s^2 var + eps)`): not exact. A bias before it cancels in the output but changes the
  running-mean update, and on a GPU the bias is free in the GEMM's epilogue anyway.
- GroupNorm/InstanceNorm after something that makes it constant: no problem has one (level2/23, 27 take a mean of
  a GroupNorm, which is not constant when gamma varies within a group, and gamma is a parameter).
- softmax over a size-1 axis: none at head (level2/13 takes softmax over 64 channels after a mean over depth).
- AvgPool1d over a Linear's features folds into the weight (16x fewer output features) but only level2/98 has it.
- clamp/min chains (level2/2, 81, 90): folding depends on the sign and size of a module's scale, a value the
  candidate would have to guard; left for the fusion generator, which fuses them into one pass anyway.
"""


def _row_cells(row: dict, verdicts: dict, v0_rows: dict) -> list[str]:
    proposed = f"{row['graph_candidates']} / {row['candidates']}"
    reason = row.get("trace_note", "")
    if row["traced"] == "no":
        return ["no", proposed, "", "-", "-", reason]
    reasons = [reason] if reason else []
    if row.get("propose_error"):
        reasons.append(row["propose_error"])
    if row.get("propose_reason"):
        reasons.append(row["propose_reason"])
    name = row["problem"].split("/", 1)[1]
    if row["version"] == "head":
        v0 = v0_rows.get(name)
        built = "see v0" if v0 and v0.get("first") else "-"
        accepted = "see v0" if v0 and (name in verdicts) else "-"
        if not v0 and row["graph_candidates"]:
            reasons.append("head only: not built or verified (GPU sizes)")
    else:
        b = row.get("built")
        built = f"{b[0]}/{b[1]}" if b and b[1] else "-"
        if row.get("cpp_not_built"):
            reasons.append(f"{row['cpp_not_built']} C++ fusion candidate(s) not built here")
        for recipe, why in (row.get("build_failures") or {}).items():
            reasons.append(f"{recipe} does not build: {why}")
        v = verdicts.get(name)
        if v is None:
            accepted = "not run" if row.get("first") else "-"
        else:
            accepted = f"{v['status']} ({v['recipe']})"
            if v["status"] != "accepted":
                reasons.append(f"verifier: {v['reason']}")
    traced = row["traced"] + ("" if row.get("shapes_known") else ", no shapes")
    return [traced, proposed, ", ".join(row["rewrites"]), built, accepted, "; ".join(reasons)]


def table(data: Path, out: Path, command: str, note: str = "") -> None:
    rows = _done(data / "scan.jsonl")
    verdicts = {r["problem"].split("/", 1)[1]: r for r in _read_all(data / "verify.jsonl")}
    v0_rows = {k.split("/", 1)[1]: r for k, r in rows.items() if r["version"] == "v0"}
    summary = []
    for version in ("v0", "head"):
        for level in (1, 2, 3):
            rs = [r for r in rows.values() if r["version"] == version and r["level"] == level]
            if not rs:
                continue
            c = Counter(r["traced"] for r in rs)
            with_graph = sum(1 for r in rs if r["graph_candidates"])
            built = sum(1 for r in rs if r.get("built") and r["built"][1] and r["built"][0] == r["built"][1])
            vs = [verdicts[r["problem"].split("/", 1)[1]] for r in rs
                  if version == "v0" and r["problem"].split("/", 1)[1] in verdicts]
            acc = sum(1 for v in vs if v["status"] == "accepted")
            summary.append(f"| {version} | {level} | {len(rs)} | {c['yes']} | {c['partial']} | {c['no']} | "
                           f"{with_graph} | {built if version == 'v0' else '-'} | "
                           f"{f'{acc}/{len(vs)}' if version == 'v0' else '-'} |")
    rewrites = Counter(r for row in rows.values() for r in row["rewrites"])
    lines = [
        "# Rewrite coverage on KernelBench (v0 and head, levels 1-3)",
        "",
        f"- Command: `{command}`",
        f"- Machine: {_cpu()}, {os.cpu_count()} cores (shared with other work), torch {torch.__version__}, "
        f"Python {platform.python_version()}",
        f"- Commit: {_commit()}; problems: `../shared/kernelbench` (read in place, not copied)",
        *([f"- {note}"] if note else []),
        "- traced: `yes` (whole forward), `partial` (submodules fx cannot trace kept as opaque calls), `no`;",
        "  `no shapes` when shape propagation on meta tensors failed (rewrites that need shapes then decline).",
        "- proposed: graph-rewrite candidates / all candidates of the rewrites proposer for the CPU "
        "(`compile_limit=2`; the rest are torch.compile variants of the reference, which need no trace).",
        "- built (v0 only): eager graph-rewrite candidates that load, construct and run one forward on the CPU at "
        "v0 sizes / all eager (plain torch) graph-rewrite candidates. torch.compile variants and C++ fusion "
        "candidates (`cpp_fusion`, an extension build of minutes on this machine) are not built here.",
        "- accepted (v0 only): the verdict of `evaluators.pipeline.evaluate(mode='verify', device='cpu')` on the "
        "first eager graph-rewrite candidate of each problem, where the capped background run reached it; "
        "`not run` where it did not.",
        "- head rows: traced and proposed at head sizes (on the meta device); built/accepted `see v0` when the "
        "same problem exists in v0. Head sizes are GPU-sized, so nothing is built or verified at them here.",
        "",
        "## Summary",
        "",
        "| version | level | problems | traced | partial | not traced | with a graph candidate | all built | "
        "accepted / verified |",
        "|---|---|---|---|---|---|---|---|---|",
        *summary,
        "",
        "Rewrites proposed (problems): " + ", ".join(f"{k} ({v})" for k, v in rewrites.most_common()),
        "",
        ANALYSIS,
        "Where the added rewrites apply (from this scan):",
        "",
        *[f"- `{name}`: " + ", ".join(sorted(r["problem"] for r in rows.values() if name in r["rewrites"]))
          for name in ("reduce_identity", "clone_elim", "pool_merge")],
        "",
        "## Every problem",
        "",
        "| problem | traced | proposed | rewrites | built | accepted | reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for rel, row in rows.items():
        cells = _row_cells(row, verdicts, v0_rows)
        lines.append("| " + " | ".join(_cell(c) for c in [rel] + cells) + " |")
    out.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["scan", "verify", "table"])
    ap.add_argument("--kernelbench", type=Path, default=DEFAULT_KB)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--per-problem", type=int, default=1)
    ap.add_argument("--time-cap", type=float, default=3600.0)
    ap.add_argument("--levels", default="2,3,1", help="v0 levels to verify, in this order")
    ap.add_argument("--note", default="", help="a line for the table's header (what was run when)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("proposers", "torch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.set_num_threads(1)
    if args.step == "scan":
        scan(args.kernelbench, args.data)
    elif args.step == "verify":
        verify(args.kernelbench, args.data, args.per_problem, args.time_cap,
               tuple(int(v) for v in args.levels.split(",")))
    else:
        table(args.data, args.out, "python experiments/rewrite_coverage.py scan; python experiments/rewrite_coverage.py"
              f" verify --per-problem 1 --time-cap S --levels 2,3,1; python experiments/rewrite_coverage.py table",
              args.note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
