"""Export: the Pareto-best accepted candidates of a campaign as drop-in modules, with a manifest of the evidence.

For each problem x hardware class, the members of the Pareto front that beat the faster baseline are written as
``<problem_id>__<hardware>.py`` (the best) and ``<problem_id>__<hardware>__<k>.py`` (the other front members).
A module that imports anything from kernelswarm's packages is refused: an export must stand on its own.
With ``remeasure``, every member is verified and timed again first (paired with the faster baseline, in fresh
processes), and whatever no longer holds is dropped. A member is exported only when the lower end of its speedup's
95% interval lies above ``min_speedup`` (1.0 by default): a speedup whose interval reaches 1.0 is not a speedup.
"""
from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import importlib.metadata
import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from evaluators.result import EvalResult, Status
from search import atomic, pareto, views
from search.snapshot import SNAPSHOT_JSON
from search.manifest_md import render_manifest_md
from search.population import read_population
from search.schema import SCHEMA_VERSION

log = logging.getLogger(__name__)

KSWARM_PACKAGES = frozenset({"kernelswarm", "kswarm", "search", "proposers", "evaluators", "cluster"})
MANIFEST_FORMAT = 1

Remeasure = Callable[[str, str, str], EvalResult]
"""(problem_path, source, hardware) -> a fresh EvalResult, from fresh processes."""


@dataclasses.dataclass(frozen=True)
class ExportSummary:
    out_dir: Path
    modules: tuple[Path, ...]
    manifest_json: Path
    manifest_md: Path
    dropped: int          # front members that did not hold up when measured again
    refused: int          # front members that import from kernelswarm


def forbidden_imports(source: str) -> list[str]:
    """Why ``source`` cannot stand alone: each import of a kernelswarm package (also relative, ``__import__``
    and ``importlib.import_module`` with a literal name), as ``line N: ...``. Empty when it is self-contained."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [f"line {e.lineno}: syntax error: {e.msg}"]
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append(f"line {node.lineno}: relative import 'from {'.' * node.level}{node.module or ''}'")
                continue
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            called = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if called in ("__import__", "import_module"):
                names = [node.args[0].value]
        found += [f"line {node.lineno}: imports {n!r}" for n in names if n.split(".")[0] in KSWARM_PACKAGES]
    return found


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def module_name(problem_id: str, hardware: str, k: int = 0) -> str:
    base = f"{_safe(problem_id)}__{_safe(hardware)}"
    return f"{base}.py" if k == 0 else f"{base}__{k}.py"


def _pair(lo: Any, hi: Any) -> list[Any] | None:
    return None if lo is None and hi is None else [lo, hi]


def _baseline(eager: float | None, compiled: float | None) -> str | None:
    times = {k: v for k, v in (("eager", eager), ("compile", compiled)) if v is not None}
    return min(times, key=times.get) if times else None


def figures_from_row(r: Mapping[str, Any]) -> dict[str, Any]:
    """The measured figures of a population row, in the manifest's shape."""
    return {
        "status": r["status"], "speedup": r["speedup"], "speedup_ci": _pair(r["speedup_ci_low"],
                                                                             r["speedup_ci_high"]),
        "candidate_ms": r["candidate_ms"], "candidate_ci_ms": _pair(r["candidate_ci_low_ms"],
                                                                   r["candidate_ci_high_ms"]),
        "samples": r["candidate_count"], "eager_ms": r["eager_ms"], "compile_ms": r["compile_ms"],
        "baseline": _baseline(r["eager_ms"], r["compile_ms"]), "max_abs_err": r["max_abs_err"],
        "max_rel_err": r["max_rel_err"], "rel_fro_err": r["rel_fro_err"], "device": r["device"],
    }


def figures_from_result(res: EvalResult) -> dict[str, Any]:
    """The same figures from a fresh ``EvalResult``, plus its reason and provenance."""
    d = res.to_dict()
    c = res.candidate
    return {
        "status": d["status"], "reason": d["reason"], "speedup": d["speedup"], "speedup_ci": d["speedup_ci"],
        "candidate_ms": d["candidate_ms"], "candidate_ci_ms": [c.ci_low_ms, c.ci_high_ms] if c else None,
        "samples": c.count if c else None, "eager_ms": d["eager_ms"], "compile_ms": d["compile_ms"],
        "baseline": _baseline(d["eager_ms"], d["compile_ms"]), "max_abs_err": d["max_abs_err"],
        "max_rel_err": d["max_rel_err"], "rel_fro_err": d["rel_fro_err"],
        "device": res.device_name or res.device, "provenance": res.provenance, "policy": res.policy,
    }


def _holds(res: EvalResult, min_speedup: float) -> str | None:
    """None when a remeasured candidate still holds (its speedup's interval lies above ``min_speedup``); else why
    not."""
    if res.status is not Status.ACCEPTED:
        return f"remeasured {res.status.value}: {res.reason}"
    low = res.speedup_ci[0] if res.speedup_ci else None
    if res.speedup is None or low is None or low <= min_speedup:
        return (f"remeasured speedup {res.speedup} has its 95% interval {res.speedup_ci} reaching down to "
                f"{min_speedup} or below")
    return None


def _above(members: pa.Table, min_speedup: float) -> pa.Table:
    """The members whose speedup's 95% interval lies above ``min_speedup`` (a member without an interval: its
    point)."""
    low = pc.if_else(pc.is_null(members.column("speedup_ci_low")), members.column("speedup"),
                     members.column("speedup_ci_low"))
    return members.filter(pc.fill_null(pc.greater(low, min_speedup), False))


def _header(r: Mapping[str, Any], figures: Mapping[str, Any]) -> str:
    ci = figures.get("speedup_ci") or [None, None]
    return (f"# Exported by kernelswarm from campaign {r['campaign']!r}: problem {r['problem_id']}, "
            f"hardware {r['hardware']}.\n"
            f"# Candidate {r['candidate_id']}: speedup {figures['speedup']} (95% CI {ci[0]}..{ci[1]}) over "
            f"{figures['baseline']} on {figures['device']}.\n"
            "# Self-contained: it imports nothing from kernelswarm. See manifest.json for the evidence.\n\n")


def export(campaign_dir: str | Path, out_dir: str | Path, remeasure: Remeasure | None = None, *,
           min_speedup: float = 1.0) -> ExportSummary:
    """Write the Pareto-best accepted candidates of every problem x hardware class, and the manifests."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_previous_export(out)
    table = read_population(campaign_dir)
    acc = views.accepted(table.select(["problem_id", "hardware", "status", "speedup"]))
    islands = sorted({(p, h) for p, h in zip(acc.column("problem_id").to_pylist(),
                                             acc.column("hardware").to_pylist(), strict=True)})
    entries: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for problem_id, hardware in islands:
        members, island_refused = _exportable_front(table, problem_id, hardware)
        refused += island_refused
        members = _above(members, min_speedup)
        kept = []
        for r in members.to_pylist():
            ident = {"problem_id": problem_id, "hardware": hardware, "candidate_id": r["candidate_id"]}
            measured, again = figures_from_row(r), None
            if remeasure is not None:
                again, why = _remeasure(remeasure, r, min_speedup)
                if why is not None:
                    log.info("dropping %s on %s: %s", r["candidate_id"], hardware, why)
                    dropped.append({**ident, "reason": why, "measured": measured, "remeasured": again})
                    continue
            kept.append((r, measured, again))
        kept.sort(key=lambda x: -(x[2] or x[1])["speedup"])
        for k, (r, measured, again) in enumerate(kept):
            name = module_name(problem_id, hardware, k)
            atomic.write_text(out / name, _header(r, again or measured) + r["source"])
            entries.append(_entry(r, name, k, measured, again))
    manifest = _manifest(campaign_dir, table, entries, dropped, refused, remeasure is not None, min_speedup)
    atomic.write_text(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    atomic.write_text(out / "manifest.md", render_manifest_md(manifest))
    return ExportSummary(out_dir=out, modules=tuple(out / e["module"] for e in entries),
                         manifest_json=out / "manifest.json", manifest_md=out / "manifest.md",
                         dropped=len(dropped), refused=len(refused))


def _exportable_front(table: pa.Table, problem_id: str, hardware: str) -> tuple[pa.Table, list[dict]]:
    """The front among candidates that stand alone: a refused member makes way for those it dominated."""
    island = views.select(table, problem_id=problem_id, hardware=hardware)
    refused: list[dict[str, Any]] = []
    while True:
        members = pareto.front(island, problem_id, hardware)
        bad = {r["candidate_id"]: forbidden_imports(r["source"])
               for r in members.select(["candidate_id", "source"]).to_pylist()}
        bad = {k: v for k, v in bad.items() if v}
        if not bad:
            return members, refused
        for k, reasons in bad.items():
            log.warning("refusing to export %s: %s", k, "; ".join(reasons))
            refused.append({"problem_id": problem_id, "hardware": hardware, "candidate_id": k, "reasons": reasons})
        island = island.filter(pc.invert(pc.is_in(island.column("candidate_id"), pa.array(list(bad)))))


def _remeasure(remeasure: Remeasure, r: Mapping[str, Any], min_speedup: float
               ) -> tuple[dict[str, Any] | None, str | None]:
    try:
        res = remeasure(r["problem_path"], r["source"], r["hardware"])
    except Exception as e:   # a remeasurement that cannot run is a candidate that does not hold
        log.exception("remeasuring %s failed", r["candidate_id"])
        return None, f"remeasure raised {type(e).__name__}: {e}"
    return figures_from_result(res), _holds(res, min_speedup)


def _entry(r: Mapping[str, Any], name: str, k: int, measured: dict[str, Any],
           again: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "module": name, "front_index": k, "problem_id": r["problem_id"], "problem_path": r["problem_path"],
        "level": r["level"], "scale": r["scale"], "hardware": r["hardware"], "candidate_id": r["candidate_id"],
        "parent_ids": r["parent_ids"], "proposer": r["proposer"], "generation": r["generation"],
        "backend": r["backend"], "params": json.loads(r["params"] or "{}"), "node_id": r["node_id"],
        "measured": measured, "remeasured": again,
        "provenance": json.loads(r["provenance"] or "{}"), "policy": json.loads(r["policy"] or "{}"),
        "evaluated_at": r["created_at"].isoformat() if r["created_at"] else None,
    }


def _manifest(campaign_dir: str | Path, table: Any, entries: list, dropped: list, refused: list,
              remeasured: bool, min_speedup: float) -> dict[str, Any]:
    snapshot = Path(campaign_dir) / SNAPSHOT_JSON
    config = json.loads(snapshot.read_text()) if snapshot.is_file() else {}
    campaigns = sorted(set(table.column("campaign").to_pylist())) if table.num_rows else []
    try:
        version = importlib.metadata.version("kernelswarm")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "format": MANIFEST_FORMAT, "campaign": ", ".join(campaigns), "campaign_dir": str(Path(campaign_dir)),
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(), "kernelswarm_version": version,
        "population_schema_version": SCHEMA_VERSION, "evaluations": table.num_rows,
        "min_speedup": min_speedup, "remeasured": remeasured,
        "verify_policy": config.get("verify"), "timing_policy": config.get("timing"),
        "modules": entries, "dropped": dropped, "refused": refused,
    }


def _remove_previous_export(out: Path) -> None:
    """Modules of an earlier export into ``out`` would be mistaken for current ones."""
    old = out / "manifest.json"
    if not old.is_file():
        return
    try:
        names = [m["module"] for m in json.loads(old.read_text()).get("modules", [])]
    except (json.JSONDecodeError, TypeError, KeyError):
        log.warning("%s is not a manifest this tool wrote; leaving the folder's modules alone", old)
        return
    for name in names:
        if "/" not in name and name.endswith(".py"):
            (out / name).unlink(missing_ok=True)
