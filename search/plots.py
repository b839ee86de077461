"""PNG plots for the campaign report, drawn with matplotlib's Agg canvas (no pyplot, no display, no global state)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_ERR_FLOOR = 1e-12   # exact results (error 0) are drawn here on a log axis


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    return path


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def best_per_problem(best: pa.Table, path: Path) -> Path:
    """Horizontal bars: the best accepted speedup per problem, one bar per hardware class."""
    problems = sorted(set(best.column("problem_id").to_pylist()))
    hws = sorted(set(best.column("hardware").to_pylist()))
    fig = Figure(figsize=(8, max(2.5, 0.3 * len(problems) * max(1, len(hws)) + 1)))
    ax = fig.add_subplot()
    if not problems:
        _empty(ax, "no evaluations yet")
        return _save(fig, path)
    index = {p: i for i, p in enumerate(problems)}
    height = 0.8 / len(hws)
    for j, hw in enumerate(hws):
        rows = [r for r in best.to_pylist() if r["hardware"] == hw]
        y = [index[r["problem_id"]] + j * height for r in rows]
        ax.barh(y, [r["speedup"] or 0.0 for r in rows], height=height, label=hw)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(np.arange(len(problems)) + 0.4 - height / 2, problems, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("best accepted speedup over the faster baseline (0: none accepted)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def best_so_far(curve: pa.Table, path: Path) -> Path:
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    if curve.num_rows == 0:
        _empty(ax, "no evaluations yet")
        return _save(fig, path)
    hw_col = curve.column("hardware").to_pylist()
    x, y = curve.column("evaluation").to_numpy(), curve.column("geomean_best").to_numpy()
    for hw in sorted(set(hw_col)):
        m = np.array([h == hw for h in hw_col])
        ax.step(x[m], y[m], where="post", label=hw)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("geomean of max(best, 1) over problems")
    ax.legend(fontsize=7)
    return _save(fig, path)


def failures(counts: pa.Table, path: Path) -> Path:
    """Stacked bars: rejected or failed evaluations per status, split by hardware class."""
    statuses = sorted(set(counts.column("status").to_pylist()))
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    if not statuses:
        _empty(ax, "no failures")
        return _save(fig, path)
    rows = counts.to_pylist()
    bottom = np.zeros(len(statuses))
    for hw in sorted({r["hardware"] for r in rows}):
        n = np.array([sum(r["count"] for r in rows if r["hardware"] == hw and r["status"] == s)
                      for s in statuses], dtype=float)
        ax.bar(statuses, n, bottom=bottom, label=hw)
        bottom += n
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax.set_ylabel("evaluations")
    ax.legend(fontsize=7)
    return _save(fig, path)


def pareto_scatter(points: pa.Table, problem_id: str, path: Path) -> Path:
    """Speedup against error for one problem's accepted candidates; front members are ringed and joined."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    ax.set_title(problem_id, fontsize=9)
    if points.num_rows == 0:
        _empty(ax, "no accepted candidate")
        return _save(fig, path)
    hw_col = points.column("hardware").to_pylist()
    err = np.maximum(points.column("error").to_numpy(zero_copy_only=False), _ERR_FLOOR)
    speed = points.column("speedup").to_numpy(zero_copy_only=False)
    front = points.column("on_front").to_numpy(zero_copy_only=False)
    for hw in sorted(set(hw_col)):
        m = np.array([h == hw for h in hw_col])
        dots = ax.scatter(err[m], speed[m], s=14, alpha=0.6, label=hw)
        f = m & front
        o = np.argsort(err[f])
        ax.plot(err[f][o], speed[f][o], drawstyle="steps-post", color=dots.get_facecolor()[0], linewidth=1)
        ax.scatter(err[f], speed[f], s=40, facecolors="none", edgecolors="black", linewidths=0.8)
    ax.set_xscale("log")
    ax.axhline(1.0, color="gray", linewidth=0.6)
    ax.set_xlabel(f"error (rel. Frobenius; {_ERR_FLOOR:g} = exact)")
    ax.set_ylabel("speedup")
    ax.legend(fontsize=7)
    return _save(fig, path)
