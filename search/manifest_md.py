"""The Markdown form of an export manifest: what a person reads before taking a kernel into their code."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _speedup(f: Mapping[str, Any] | None) -> str:
    if not f or f.get("speedup") is None:
        return "-"
    ci = f.get("speedup_ci") or [None, None]
    return f"{_num(f['speedup'])}x [{_num(ci[0])}, {_num(ci[1])}]"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(c) for c in r) + " |" for r in rows)]


def render_manifest_md(m: Mapping[str, Any]) -> str:
    again = ("each was verified and timed again before export" if m["remeasured"]
             else "figures are from the campaign, not remeasured")
    lines = [f"# Export of campaign {m['campaign'] or '(empty)'}", "",
             f"Exported {m['exported_at']} by kernelswarm {m['kernelswarm_version']} from `{m['campaign_dir']}` "
             f"({m['evaluations']} evaluations). Modules beat the faster of eager and torch.compile by more than "
             f"{m['min_speedup']}x; {again}.",
             "", "Speedups are medians over the faster baseline with their 95% confidence interval.", ""]
    rows = []
    for e in m["modules"]:
        f = e["measured"]
        rows.append([f"`{e['module']}`", e["problem_id"], e["hardware"], _speedup(f),
                     _speedup(e["remeasured"]) if m["remeasured"] else "n/a",
                     f"{_num(f['max_abs_err'])} / {_num(f['max_rel_err'])}", _num(f["candidate_ms"]),
                     _num(f["eager_ms"]), _num(f["compile_ms"]), f["device"], e["candidate_id"]])
    lines += _table(["module", "problem", "hardware", "speedup [CI]", "remeasured [CI]", "max abs / rel err",
                     "candidate ms", "eager ms", "compile ms", "device", "candidate"], rows) if rows else \
        ["No candidate was accepted and faster than its baseline."]
    if m["dropped"]:
        lines += ["", "## Dropped on remeasurement", ""]
        lines += _table(["problem", "hardware", "candidate", "campaign speedup", "reason"],
                        [[d["problem_id"], d["hardware"], d["candidate_id"], _speedup(d["measured"]), d["reason"]]
                         for d in m["dropped"]])
    if m["refused"]:
        lines += ["", "## Refused (not self-contained)", ""]
        lines += _table(["problem", "hardware", "candidate", "reasons"],
                        [[d["problem_id"], d["hardware"], d["candidate_id"], "; ".join(d["reasons"])]
                         for d in m["refused"]])
    versions = sorted({json.dumps(e["provenance"], sort_keys=True) for e in m["modules"]})
    if versions:
        lines += ["", "## Versions", ""] + [f"- `{v}`" for v in versions]
    policies = sorted({json.dumps(e["policy"], sort_keys=True) for e in m["modules"] if e["policy"]})
    if policies:
        lines += ["", "## Policies recorded with the evaluations", ""] + [f"- `{p}`" for p in policies]
    for title, key in (("Verification policy", "verify_policy"), ("Timing policy", "timing_policy")):
        if m.get(key):
            lines += ["", f"## {title}", "", "```json", json.dumps(m[key], indent=2, sort_keys=True), "```"]
    return "\n".join(lines) + "\n"
