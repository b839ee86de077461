"""Run every verifier fixture through the evaluator, both static modes, and write the verdicts as a Markdown table.

    python experiments/verifier_table.py [--out experiments/results/2026-11-28-verifier-fixtures.md] [--only TEXT]

Each row: threat category (or honest technique), fixture, expected statuses, the status under static="warn" and
under static="reject", and the reason. Honest fixtures are judged in both modes too; their contract is the reject
column. A row whose verdict differs from its contract is marked, as is any escape the harness observed itself.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "experiments" / "results" / "2026-11-28-verifier-fixtures.md"

log = logging.getLogger("verifier_table")


def _load_catalog():
    spec = importlib.util.spec_from_file_location("kswarm_fixture_catalog", REPO / "tests" / "fixtures" / "catalog.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "evaluators"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + (" (evaluators/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def run(only: str | None, cache_dir: str) -> list[dict]:
    catalog = _load_catalog()
    rows = []
    for fx in catalog.load_fixtures():
        if only and only not in fx.id:
            continue
        row = {"fx": fx, "got": {}, "reason": {}, "escapes": {}, "seconds": 0.0}
        for static in ("warn", "reject"):
            t0 = time.monotonic()
            try:
                outcome = catalog.evaluate_fixture(fx, static, cache_dir)
                row["got"][static] = outcome.result.status.value
                row["reason"][static] = outcome.result.reason
                row["escapes"][static] = outcome.escapes
            except Exception as e:  # a harness failure is a row too, not the end of the table
                row["got"][static] = "harness_error"
                row["reason"][static] = f"{type(e).__name__}: {e}".splitlines()[0]
                row["escapes"][static] = ()
            row["seconds"] += time.monotonic() - t0
            log.info("%-48s static=%-6s %s", fx.id, static, row["got"][static])
        rows.append(row)
    return rows


def _verdict_mark(fx, static: str, got: str, escapes) -> str:
    if escapes:
        return " (ESCAPED)"
    if static in fx.expected and got not in fx.expected[static]:
        return " (UNEXPECTED)"
    return ""


def render(rows: list[dict], command: str, wall_s: float) -> str:
    import torch
    lines = [
        "# Verifier fixtures: expected and observed verdicts",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.node()}, {_cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}, kernelswarm commit {_git_commit()}",
        "- request: device=cpu, mode=verify, memory_mb=2048, timeout_s=90, max_file_mb=64 unless a fixture's POLICY "
        "line says otherwise; a fresh seed per evaluation",
        f"- wall time: {wall_s:.0f} s",
        "",
        "Expected statuses come from each fixture's docstring (`a|b` = either). Honest fixtures are contracted under "
        "static=reject only; their static=warn column is for information. UNEXPECTED marks a verdict outside the "
        "contract; ESCAPED marks a candidate that reached the loopback listener or wrote its marker file.",
        "",
        "| category | fixture | expected | got (static=warn) | got (static=reject) | reason |",
        "|---|---|---|---|---|---|",
    ]
    bad = 0
    for row in rows:
        fx = row["fx"]
        exp = "; ".join(f"{k}: {'|'.join(v)}" for k, v in fx.expected.items())
        got = {}
        for static in ("warn", "reject"):
            mark = _verdict_mark(fx, static, row["got"][static], row["escapes"][static])
            bad += bool(mark) and static in fx.expected
            got[static] = row["got"][static] + mark
        # the reason of the contracted verdict that went wrong, else of the warn run (the dynamic checks)
        key = next((s for s in ("warn", "reject") if "UNEXPECTED" in got[s] or "ESCAPED" in got[s]),
                   "warn" if "warn" in fx.expected else "reject")
        reason = row["reason"][key]
        if row["escapes"][key]:
            reason += " [" + "; ".join(row["escapes"][key]) + "]"
        lines.append(f"| {_cell(fx.label)} | `{fx.id}` | {_cell(exp)} | {_cell(got['warn'])} | "
                     f"{_cell(got['reject'])} | {_cell(reason[:300])} |")
    lines += ["", f"{len(rows)} fixtures; {bad} contracted verdict(s) outside their contract.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", help="run only fixtures whose id contains this text")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.path.insert(0, str(REPO))
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO), *(argv or sys.argv[1:])])
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kswarm-verifier-table-") as cache_dir:
        rows = run(args.only, cache_dir)
    text = render(rows, command, time.monotonic() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
