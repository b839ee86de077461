"""The ``kswarm`` command line. It owns the terminal: rich tables for people, JSON for scripts.

Exit codes of ``verify`` and ``bench``: 0 accepted, 1 rejected, 2 bad input (a one-line message, no traceback).
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="kernelswarm: search for verified, faster drop-in kernels for PyTorch workloads.")
node_app = typer.Typer(no_args_is_help=True, help="Start Ray nodes with their hardware resources.")
app.add_typer(node_app, name="node")
out = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="log progress to stderr")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _check_device(device: str) -> None:
    import torch
    kind = device.split(":")[0]
    if kind == "cpu":
        return
    if kind == "cuda" and not torch.cuda.is_available():
        _fail(f"device {device!r} is not available here (no CUDA); use --device cpu or run on a GPU host")
    if kind == "mps" and not torch.backends.mps.is_available():
        _fail(f"device {device!r} is not available here (no MPS); use --device cpu")
    if kind not in ("cpu", "cuda", "mps"):
        _fail(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps")


def _evaluate(problem: Path, candidate: Path, device: str, mode: str, scale: str, static: str,
              seed: Optional[int], timeout: float, cache_dir: Optional[Path], time_cap: float, ci_target: float):
    from evaluators.pipeline import evaluate
    from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy
    from evaluators.problem import BadInput, check_candidate_source, load_problem_module, read_source

    if static not in ("reject", "warn"):
        _fail(f"--static must be 'reject' or 'warn', not {static!r}")
    try:
        load_problem_module(str(problem), scale)
        source = read_source(candidate, "candidate")
        check_candidate_source(source, str(candidate))
    except BadInput as e:
        _fail(str(e))
    _check_device(device)
    req = EvalRequest(problem_path=str(problem), candidate_source=source, device=device, mode=mode, scale=scale,
                      verify=VerifyPolicy(static=static, seed=seed, timeout_s=timeout),
                      timing=TimingPolicy(time_cap_s=time_cap, ci_target=ci_target),
                      cache_dir=str(cache_dir) if cache_dir else None)
    try:
        result = evaluate(req)
    except BadInput as e:
        _fail(str(e))
    if result.status.value == "baseline_error":  # the problem's fault, not the candidate's
        _fail(f"problem {problem}: {result.reason}; fix the problem file")
    return result


def _fmt_ms(t) -> str:
    if t is None:
        return "-"
    return f"{t.median_ms:.4f} ms  [{t.ci_low_ms:.4f}, {t.ci_high_ms:.4f}]  n={t.count}"


def _show(result, problem: Path, candidate: Path, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(result.to_json() + "\n")
        return
    colour = "green" if result.verdict == "accepted" else "red"
    table = Table(title=f"{candidate.name} vs {problem.name} on {result.device}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("verdict", f"[{colour}]{result.verdict}[/] ({result.status.value})")
    table.add_row("reason", result.reason)
    if result.max_abs_err is not None:
        table.add_row("errors", f"max abs {result.max_abs_err:.3g}, max rel {result.max_rel_err:.3g}, "
                                f"rel Frobenius {result.rel_fro_err:.3g}")
    if result.probe_verdicts:
        table.add_row("probes", ", ".join(f"{p}: {v}" for p, v in result.probe_verdicts))
    if result.candidate is not None:
        table.add_row("candidate", _fmt_ms(result.candidate))
        table.add_row("eager", _fmt_ms(result.eager))
        table.add_row("torch.compile", _fmt_ms(result.compile))
    if result.speedup is not None:
        lo, hi = result.speedup_ci
        table.add_row("speedup", f"{result.speedup:.3f}x  [{lo:.3f}, {hi:.3f}] over the faster baseline")
    if result.device_name:
        table.add_row("device", result.device_name)
    for f in result.static_flags:
        table.add_row("static flag", f)
    for w in result.warnings:
        table.add_row("[yellow]warning[/]", w)
    out.print(table)


_DEVICE = typer.Option("cpu", "--device", "-d", help="cpu, cuda, cuda:N or mps")
_JSON = typer.Option(False, "--json", help="print the result as JSON")
_SCALE = typer.Option("default", "--scale", help="a key of the problem's SCALES, e.g. large")
_STATIC = typer.Option("reject", "--static", help="reject: static findings reject; warn: record them only")
_SEED = typer.Option(None, "--seed", help="fix the verification seed (default: fresh)")
_TIMEOUT = typer.Option(300.0, "--timeout", help="wall-clock limit for the candidate's process, seconds")
_CACHE = typer.Option(None, "--cache-dir", help="build and baseline cache (default ~/.cache/kernelswarm)")


@app.command()
def verify(problem: Path = typer.Argument(..., help="problem file: Model, get_inputs, get_init_inputs"),
           candidate: Path = typer.Argument(..., help="candidate file defining ModelNew"),
           device: str = _DEVICE, as_json: bool = _JSON, scale: str = _SCALE, static: str = _STATIC,
           seed: Optional[int] = _SEED, timeout: float = _TIMEOUT, cache_dir: Optional[Path] = _CACHE) -> None:
    """Check a candidate strictly: exit 0 accepted, 1 rejected, 2 bad input."""
    result = _evaluate(problem, candidate, device, "verify", scale, static, seed, timeout, cache_dir, 10.0, 0.02)
    _show(result, problem, candidate, as_json)
    raise typer.Exit(0 if result.verdict == "accepted" else 1)


@app.command()
def bench(problem: Path = typer.Argument(..., help="problem file: Model, get_inputs, get_init_inputs"),
          candidate: Path = typer.Argument(..., help="candidate file defining ModelNew"),
          device: str = _DEVICE, as_json: bool = _JSON, scale: str = _SCALE, static: str = _STATIC,
          seed: Optional[int] = _SEED, timeout: float = _TIMEOUT, cache_dir: Optional[Path] = _CACHE,
          time_cap: float = typer.Option(10.0, "--time-cap", help="seconds of timing per subject, at most"),
          ci_target: float = typer.Option(0.02, "--ci-target", help="relative half-width of the median's 95% CI"),
          ) -> None:
    """Verify, then time the candidate against eager and torch.compile (exit codes as verify)."""
    result = _evaluate(problem, candidate, device, "bench", scale, static, seed, timeout, cache_dir, time_cap,
                       ci_target)
    _show(result, problem, candidate, as_json)
    raise typer.Exit(0 if result.verdict == "accepted" else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
