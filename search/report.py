"""The campaign report: one document, rendered as Markdown and as standalone HTML, with PNG plots beside it.

The HTML needs no network and no other file than its plots, which it references by relative path
(``plots/*.png``); ``embed_images=True`` inlines them instead, for a single-file report.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from search import atomic, plots, report_data, views
from search.checkpoint import load_checkpoint
from search.population import read_population

PLOTS_DIR = "plots"


@dataclasses.dataclass(frozen=True)
class ReportPaths:
    markdown: Path
    html: Path
    plots: tuple[Path, ...]


@dataclasses.dataclass(frozen=True)
class Block:
    """A heading (``h2``), a paragraph (``p``), a table (``table``: header, rows) or an image (``img``)."""

    kind: str
    text: str = ""
    header: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    src: str = ""


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def _table(t: pa.Table, columns: Sequence[str], header: Sequence[str] | None = None) -> Block:
    rows = tuple(tuple(_fmt(r[c]) for c in columns) for r in t.select(list(columns)).to_pylist())
    return Block("table", header=tuple(header or columns), rows=rows)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def build(table: pa.Table, out_dir: Path, wall_s: float | None = None) -> tuple[list[Block], list[Path]]:
    """The report's blocks, drawing its plots into ``out_dir/plots``; ``wall_s`` is the campaign's elapsed time
    (for the throughput figures; None: the span of its evaluations)."""
    pdir = out_dir / PLOTS_DIR
    made: list[Path] = []
    blocks: list[Block] = []
    campaigns = ", ".join(sorted(set(table.column("campaign").to_pylist()))) or "(no evaluations)"
    counts = views.status_counts(table)
    blocks.append(Block("p", f"Campaign {campaigns}: {table.num_rows} evaluations, "
                             f"{counts.get(views.ACCEPTED, 0)} accepted. Speedups are over the faster of eager "
                             "and torch.compile; a problem's best is its best accepted candidate on a hardware "
                             "class, and suspect speedups never count."))

    blocks += [Block("h2", "Speedup by level"),
               Block("p", "fast_1: share of problems whose best accepted candidate is correct and faster than 1. "
                          "mean and geomean: over problems with an accepted candidate. geomean deployed: over all "
                          "problems, of max(best, 1) (the baseline stays where nothing beat it).")]
    best = report_data.best_per_problem(table)
    blocks.append(_table(report_data.level_summary(best),
                         ["level", "hardware", "problems", "correct", "fast_1", "mean_speedup",
                          "geomean_speedup", "geomean_deployed"],
                         ["level", "hardware", "problems", "correct", "fast_1", "mean", "geomean",
                          "geomean deployed"]))

    made.append(plots.best_per_problem(best, pdir / "best_per_problem.png"))
    blocks += [Block("h2", "Best speedup per problem"), Block("img", "best speedup per problem", src=_rel(made[-1])),
               _table(best, ["level", "problem_id", "hardware", "speedup", "speedup_ci_low", "speedup_ci_high",
                             "max_abs_err", "candidate_ms", "eager_ms", "compile_ms", "proposer", "candidate_id"],
                      ["level", "problem", "hardware", "speedup", "CI low", "CI high", "max abs err",
                       "candidate ms", "eager ms", "compile ms", "proposer", "candidate"])]

    made.append(plots.best_so_far(report_data.best_so_far(table), pdir / "best_so_far.png"))
    blocks += [Block("h2", "Best so far"), Block("img", "best so far against evaluations", src=_rel(made[-1]))]

    fails = report_data.failures_by_status(table)
    made.append(plots.failures(fails, pdir / "failures_by_status.png"))
    blocks += [Block("h2", "Failures by status"), Block("img", "failures by status", src=_rel(made[-1])),
               _table(fails, ["status", "hardware", "count"]), Block("p", "Most recent failures:"),
               _table(views.recent_failures(table, 10), ["problem_id", "hardware", "status", "reason"],
                      ["problem", "hardware", "status", "reason"])]

    blocks += _throughput_blocks(table, wall_s)
    blocks += _llm_blocks(table)

    blocks.append(Block("h2", "Pareto fronts"))
    blocks.append(Block("p", "Accepted candidates per problem, speedup against error; ringed points are on their "
                             "hardware class's front."))
    for pid in sorted(set(views.accepted(table.select(["problem_id", "status", "speedup"])).column(
            "problem_id").to_pylist())):
        made.append(plots.pareto_scatter(report_data.pareto_points(table, pid), pid,
                                         pdir / f"pareto__{_slug(pid)}.png"))
        blocks.append(Block("img", f"Pareto front of {pid}", src=_rel(made[-1])))
    return blocks, made


def _llm_blocks(table: pa.Table) -> list[Block]:
    ideas = report_data.llm_ideas(table)
    if not ideas.num_rows:
        return []
    guided = sum(1 for g in ideas.column("from_guidance").to_pylist() if g is True)
    return [Block("h2", "LLM ideas"),
            Block("p", f"{ideas.num_rows} candidates written by an LLM proposer, {guided} of them from an idea a "
                       "person gave (the campaign file's guidance or kswarm guide), marked yes below."),
            Block("table", header=("problem", "hardware", "role", "from guidance", "idea", "status", "speedup"),
                  rows=tuple((r["problem_id"], r["hardware"], r["role"], "yes" if r["from_guidance"] else "",
                              r["idea"] or "-", r["status"], _fmt(r["speedup"]))
                             for r in ideas.to_pylist()))]


def _throughput_blocks(table: pa.Table, wall_s: float | None) -> list[Block]:
    summary, devices, stages = report_data.throughput(table, wall_s)
    per_dev_h, busy = summary["evaluations_per_device_hour"], summary["busy_fraction"]
    text = (f"{summary['evaluations']} evaluations in {summary['wall_s'] / 60:.1f} min of campaign time "
            f"({summary['evaluations_per_hour']:.0f} per hour); {summary['device_evaluations']} reached a device")
    if per_dev_h is not None:
        text += f": {per_dev_h:.0f} per device-hour, devices busy {busy:.0%} of the time on average"
        if summary.get("timed_fraction") is not None:
            text += f", and in timed calls {summary['timed_fraction']:.0%} of the time by the devices' own clocks"
    text += (". Busy: the union of the intervals a device ran candidate or baseline work. Stages: queue is the wait "
             "for a device after the cheap checks, precheck the cheap checks on a CPU worker, device the whole time "
             "on the device; the others are the evaluator's own stages.")
    return [Block("h2", "Throughput"), Block("p", text),
            _table(devices, ["device", "hardware", "evaluations", "busy_s", "busy_fraction", "per_hour"],
                   ["device", "hardware", "evaluations", "busy s", "busy fraction", "evaluations per hour"]),
            _table(stages, ["stage", "count", "total_s", "mean_s"], ["stage", "count", "total s", "mean s"])]


def _rel(path: Path) -> str:
    return f"{PLOTS_DIR}/{path.name}"


def _md_cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, blocks: Sequence[Block]) -> str:
    out = [f"# {title}", ""]
    for b in blocks:
        if b.kind == "h2":
            out += [f"## {b.text}", ""]
        elif b.kind == "p":
            out += [b.text, ""]
        elif b.kind == "img":
            out += [f"![{b.text}]({b.src})", ""]
        elif b.kind == "table":
            out += ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
            out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows] or []
            out += ["" if b.rows else "(none)", ""]
    return "\n".join(out)


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}"
        "table{border-collapse:collapse;font-size:0.85em;margin:1em 0}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f2f2f2}"
        "img{max-width:100%;display:block;margin:1em 0}")


def render_html(title: str, blocks: Sequence[Block], *, image_root: Path | None = None) -> str:
    """Standalone HTML. With ``image_root``, images are inlined as data URIs read from there."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    for b in blocks:
        if b.kind == "h2":
            out.append(f"<h2>{e(b.text)}</h2>")
        elif b.kind == "p":
            out.append(f"<p>{e(b.text)}</p>")
        elif b.kind == "img":
            src = b.src
            if image_root is not None:
                src = "data:image/png;base64," + base64.b64encode((image_root / b.src).read_bytes()).decode()
            out.append(f'<img src="{e(src)}" alt="{e(b.text)}">')
        elif b.kind == "table":
            out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in b.header) + "</tr></thead>")
            body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b.rows)
            out.append(f"<tbody>{body or '<tr><td colspan=99>(none)</td></tr>'}</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def report(campaign_dir: str | Path, out_dir: str | Path | None = None, *,
           embed_images: bool = False) -> ReportPaths:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` (default: ``campaign_dir/report``)."""
    out = Path(out_dir) if out_dir is not None else Path(campaign_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    table = read_population(campaign_dir)
    ck = load_checkpoint(campaign_dir)
    blocks, made = build(table, out, wall_s=ck.elapsed_s if ck is not None else None)
    title = "kernelswarm report: " + (", ".join(sorted(set(table.column("campaign").to_pylist()))) or
                                      Path(campaign_dir).name)
    md, page = out / "report.md", out / "report.html"
    atomic.write_text(md, render_markdown(title, blocks))
    atomic.write_text(page, render_html(title, blocks, image_root=out if embed_images else None))
    return ReportPaths(markdown=md, html=page, plots=tuple(made))
