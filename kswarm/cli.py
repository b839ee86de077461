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
from rich.markup import escape
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="kernelswarm: search for verified, faster drop-in kernels for PyTorch workloads.")
node_app = typer.Typer(no_args_is_help=True, help="Start Ray nodes with their hardware resources.")
app.add_typer(node_app, name="node")
out = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    # the message quotes user input (keys, values, paths), which must print as written, never as rich markup
    err.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="log progress to stderr")) -> None:
    # the terminal gets warnings (or progress with -v); campaign logs go to files at INFO regardless
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


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
              seed: Optional[int], timeout: Optional[float], cache_dir: Optional[Path], time_cap: float, ci_target: float,
              ncu: bool = False, processes: int = 1):
    from evaluators.pipeline import evaluate
    from evaluators.policy import EvalRequest, TimingPolicy, VerifyPolicy
    from evaluators.problem import BadInput, check_candidate_source, load_problem_module, read_source

    if static not in ("reject", "warn"):
        _fail(f"--static must be 'reject' or 'warn', not {static!r}")
    if not 1 <= processes <= 16:
        _fail(f"--processes must be between 1 and 16, not {processes}")
    try:
        load_problem_module(str(problem), scale)
        source = read_source(candidate, "candidate")
        check_candidate_source(source, str(candidate))
    except BadInput as e:
        _fail(str(e))
    _check_device(device)
    req = EvalRequest(problem_path=str(problem), candidate_source=source, device=device, mode=mode, scale=scale,
                      verify=VerifyPolicy(static=static, seed=seed,
                                          **({} if timeout is None else {"timeout_s": timeout})),
                      timing=TimingPolicy(time_cap_s=time_cap, ci_target=ci_target, ncu=ncu, processes=processes),
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
_TIMEOUT = typer.Option(None, "--timeout", help="the most wall clock the candidate's process may take, seconds "
                        "(default: follows the problem's time and the backend's compile allowance)")
_CACHE = typer.Option(None, "--cache-dir", help="build and baseline cache (default ~/.cache/kernelswarm)")


@app.command()
def verify(problem: Path = typer.Argument(..., help="problem file: Model, get_inputs, get_init_inputs"),
           candidate: Path = typer.Argument(..., help="candidate file defining ModelNew"),
           device: str = _DEVICE, as_json: bool = _JSON, scale: str = _SCALE, static: str = _STATIC,
           seed: Optional[int] = _SEED, timeout: Optional[float] = _TIMEOUT, cache_dir: Optional[Path] = _CACHE) -> None:
    """Check a candidate strictly: exit 0 accepted, 1 rejected, 2 bad input."""
    result = _evaluate(problem, candidate, device, "verify", scale, static, seed, timeout, cache_dir, 10.0, 0.02)
    _show(result, problem, candidate, as_json)
    raise typer.Exit(0 if result.verdict == "accepted" else 1)


@app.command()
def bench(problem: Path = typer.Argument(..., help="problem file: Model, get_inputs, get_init_inputs"),
          candidate: Path = typer.Argument(..., help="candidate file defining ModelNew"),
          device: str = _DEVICE, as_json: bool = _JSON, scale: str = _SCALE, static: str = _STATIC,
          seed: Optional[int] = _SEED, timeout: Optional[float] = _TIMEOUT, cache_dir: Optional[Path] = _CACHE,
          time_cap: float = typer.Option(10.0, "--time-cap", help="seconds of timing per subject, at most"),
          ci_target: float = typer.Option(0.02, "--ci-target", help="relative half-width of the median's 95% CI"),
          ncu: bool = typer.Option(False, "--ncu", help="on CUDA, add Nsight Compute's counters per kernel to the "
                                   "profile (a rebuild under ncu; needs ncu on PATH)"),
          processes: int = typer.Option(3, "--processes", help="pairs of fresh processes (candidate and baselines) "
                                        "the timing is spread over, sharing the time cap; the interval then holds "
                                        "each pair's own speedup"),
          ) -> None:
    """Verify, then time the candidate against eager and torch.compile (exit codes as verify)."""
    result = _evaluate(problem, candidate, device, "bench", scale, static, seed, timeout, cache_dir, time_cap,
                       ci_target, ncu, processes)
    _show(result, problem, candidate, as_json)
    raise typer.Exit(0 if result.verdict == "accepted" else 1)


# campaigns ---------------------------------------------------------------------------------------------------

def _load_campaign(path: Path, out_dir: Optional[Path]):
    from search.config import ConfigError, check_problem_files, load_config
    try:
        cfg = load_config(path, out=out_dir)
        check_problem_files(cfg)
        return cfg
    except ConfigError as e:
        _fail(" ".join(str(e).split()))


def _live_run(cfg, out_dir: Path, address: Optional[str], local: bool = False) -> None:
    import os
    from rich.live import Live

    from search.campaign import Campaign
    from search.checkpoint import CheckpointError
    from search.export import export
    from search.journal import JournalLockedError
    from search.report import report
    from search.protocol import NoDevice
    from search.schema import SchemaError

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address is None and os.environ.get("RAY_ADDRESS"):
        address = "auto"   # inside `ray job submit`: join the cluster the job runs on
    live = Live(console=err, refresh_per_second=2, transient=False)

    def show(p) -> None:
        live.update(_progress_table(cfg.campaign.name, p))

    try:
        with live:
            progress = Campaign(cfg, out_dir, address=address, on_progress=show, local=local).run()
            show(progress)
    except NoDevice as e:             # no node (or, with --local, no local device) of a target class
        _fail(" ".join(str(e).split()))
    except (CheckpointError, SchemaError, JournalLockedError) as e:   # a campaign directory it cannot carry on
        _fail(f"{out_dir}: {e}")
    except KeyboardInterrupt:
        err.print(f"interrupted: the campaign directory {out_dir} is consistent; carry on with "
                  f"`kswarm resume {out_dir}`")
        raise typer.Exit(130) from None
    summary = export(out_dir, out_dir / "export")
    paths = report(out_dir)
    out.print(f"[bold]{cfg.campaign.name}[/]: {progress.done} evaluations ({progress.note}); "
              f"{len(summary.modules)} kernels exported to {summary.out_dir}; report at {paths.html}")


def _progress_table(name: str, p) -> Table:
    t = Table(title=f"campaign {name}: {p.done}/{p.budget} evaluations, {p.in_flight} in flight, "
                    f"generation {p.generation}, {p.elapsed_s / 60:.1f} min"
                    + (f", ETA {p.eta_s / 60:.1f} min" if p.eta_s else "") + (f" ({p.note})" if p.note else ""))
    t.add_column("problem")
    t.add_column("hardware")
    t.add_column("best speedup", justify="right")
    for (prob, hw), sp in sorted(p.best.items()):
        t.add_row(prob, hw, f"{sp:.2f}x")
    caption = "  ".join(f"{k}: {v}" for k, v in sorted(p.statuses.items()))
    if p.throughput:
        caption += ("\n" if caption else "") + _throughput_line(p.throughput)
    if getattr(p, "llm", None):
        caption += ("\n" if caption else "") + (
            f"llm: {p.llm.get('candidates', 0)} candidates, {p.llm.get('from_guidance', 0)} from guidance, "
            f"{p.llm.get('tokens', 0)} tokens, ${p.llm.get('cost_usd', 0.0):.4f}")
    t.caption = caption or None
    return t


def _throughput_line(tp: dict) -> str:
    """Evaluations per device-hour, busy fraction per device and mean seconds per stage, on one line."""
    parts = [f"{tp['evaluations_per_hour']:.0f} eval/h"]
    if tp.get("evaluations_per_device_hour") is not None:
        parts.append(f"{tp['evaluations_per_device_hour']:.0f} per device-hour")
        parts.append("busy " + ", ".join(f"{d} {v['busy_fraction']:.0%}" for d, v in tp["devices"].items())
                     + (f", {tp['idle_devices']} idle" if tp.get("idle_devices") else ""))
        if tp.get("timed_fraction") is not None:
            parts.append(f"timed calls {tp['timed_fraction']:.0%} of device time")
    stages = tp.get("stages") or {}
    if stages:
        parts.append("mean s: " + " ".join(f"{k} {v['mean_s']:.2g}" for k, v in stages.items()))
    return "; ".join(parts)


@app.command()
def run(campaign: Path = typer.Argument(..., help="campaign TOML file"),
        out_dir: Optional[Path] = typer.Option(None, "--out", help="campaign directory (default: the file's out)"),
        address: Optional[str] = typer.Option(None, "--address", help="Ray address; a local Ray when omitted"),
        local: bool = typer.Option(False, "--local", help="no Ray: evaluate in this process, one device per target")
        ) -> None:
    """Run a campaign; leaves a population, an export and a report in its directory."""
    cfg = _load_campaign(campaign, out_dir)
    from search.config import ConfigError
    from search.snapshot import SNAPSHOT_JSON, forget_unstarted, write_snapshot
    fresh = not (cfg.campaign.out / SNAPSHOT_JSON).exists()
    try:
        write_snapshot(cfg)
    except (ConfigError, OSError) as e:
        _fail(" ".join(str(e).split()))
    try:
        _live_run(cfg, cfg.campaign.out, address, local)
    except Exception as e:
        # a start that fails before its first evaluation (no device of a target class, a crash) takes its snapshot
        # back, so that the folder is not taken later for a different campaign to resume; an interrupted one (exit
        # 130) keeps it, as the message it printed says to resume it
        if fresh and not (isinstance(e, typer.Exit) and e.exit_code in (0, 130)):
            forget_unstarted(cfg.campaign.out)
        raise


@app.command()
def resume(directory: Path = typer.Argument(..., help="a campaign directory"),
           address: Optional[str] = typer.Option(None, "--address", help="Ray address; a local Ray when omitted"),
           local: bool = typer.Option(False, "--local", help="no Ray: evaluate in this process, one device per target")
           ) -> None:
    """Carry on a campaign where it stopped: nothing evaluated is lost or done twice."""
    from search.config import ConfigError
    from search.snapshot import load_snapshot
    try:
        cfg = load_snapshot(directory)
    except (ConfigError, OSError, ValueError) as e:
        _fail(f"{directory} is not a campaign directory ({' '.join(str(e).split())}); start one with kswarm run")
    _live_run(cfg, Path(directory), address, local)


@app.command()
def status(directory: Path = typer.Argument(..., help="a campaign directory"),
           as_json: bool = _JSON) -> None:
    """Evaluations by status, the best speedup per problem and hardware, and the checkpoint."""
    from search.checkpoint import CheckpointError
    from search.schema import SchemaError
    from search.status import campaign_status
    try:
        st = campaign_status(directory)
    except (FileNotFoundError, CheckpointError, SchemaError) as e:
        _fail(str(e))
    if as_json:
        sys.stdout.write(json.dumps(st, indent=2, sort_keys=True, default=str) + "\n")
        return
    t = Table(title=f"{st['campaign']}: {st['evaluations']} evaluations, {st['in_flight']} in flight, "
                    f"generation {st['generation']}, {st['elapsed_s'] / 60:.1f} min")
    for col in ("problem", "hardware", "best speedup", "candidate"):
        t.add_column(col)
    for b in st["best"]:
        t.add_row(b["problem_id"], b["hardware"], f"{b['speedup']:.3f}x", b["candidate_id"])
    t.caption = "  ".join(f"{k}: {v}" for k, v in sorted(st["statuses"].items()))
    if st["throughput"]["evaluations"]:
        t.caption += "\n" + _throughput_line(st["throughput"])
    out.print(t)


@app.command("export")
def export_cmd(directory: Path = typer.Argument(..., help="a campaign directory"),
               out_dir: Path = typer.Option(..., "--out", help="where the modules and manifest go"),
               remeasure: bool = typer.Option(False, "--remeasure", help="re-verify and re-time in fresh processes "
                                              "first; drop whatever no longer holds"),
               min_speedup: float = typer.Option(1.0, "--min-speedup", help="export only kernels whose speedup's 95% "
                                                 "interval lies above this (default 1.0)")) -> None:
    """Write the Pareto-best verified kernels as drop-in modules with a manifest."""
    from search.export import export
    from search.remeasure import remeasurer
    if not (directory / "population").is_dir():
        _fail(f"{directory} has no population; run a campaign there first (kswarm run)")
    if not min_speedup > 0:
        _fail(f"--min-speedup must be above 0, got {min_speedup}")
    summary = export(directory, out_dir, remeasurer(directory) if remeasure else None, min_speedup=min_speedup)
    out.print(f"{len(summary.modules)} modules written to {summary.out_dir}; manifest {summary.manifest_md}"
              + (f"; dropped {len(summary.dropped)}" if summary.dropped else ""))


@app.command("report")
def report_cmd(directory: Path = typer.Argument(..., help="a campaign directory"),
               out_dir: Optional[Path] = typer.Option(None, "--out", help="default DIR/report")) -> None:
    """Markdown and HTML report with plots."""
    from search.report import report
    if not (directory / "population").is_dir():
        _fail(f"{directory} has no population; run a campaign there first (kswarm run)")
    paths = report(directory, out_dir)
    out.print(f"report: {paths.markdown} and {paths.html}")


@app.command()
def add(directory: Path = typer.Argument(..., help="a campaign directory, running or stopped"),
        candidate: Path = typer.Argument(..., help="candidate file defining ModelNew"),
        problem: Optional[str] = typer.Option(None, "--problem", help="problem id (default: the file name up to "
                                              "'__')")) -> None:
    """Hand a candidate to a campaign; it is evaluated in the campaign's next generation."""
    from evaluators.problem import BadInput, check_candidate_source, read_source
    from search.campaign import INBOX
    try:
        source = read_source(candidate, "candidate")
        check_candidate_source(source, str(candidate))
    except BadInput as e:
        _fail(str(e))
    if not (directory / "campaign.json").exists():
        _fail(f"{directory} is not a campaign directory; start one with kswarm run")
    pid = problem or candidate.stem.split("__")[0]
    from search.snapshot import load_snapshot
    ids = {f.stem for f in load_snapshot(directory).problem_files}
    if pid not in ids:
        _fail(f"problem {pid!r} is not in this campaign ({', '.join(sorted(ids))}); pass --problem ID")
    import hashlib
    dest = directory / INBOX / f"{pid}__{hashlib.sha256(source.encode()).hexdigest()[:10]}.py"
    dest.parent.mkdir(parents=True, exist_ok=True)
    from search import atomic
    atomic.write_text(dest, source)
    out.print(f"added {dest}; the campaign picks it up in its next generation (or on kswarm resume)")


@app.command()
def guide(directory: Path = typer.Argument(..., help="a campaign directory, running or stopped"),
          text: str = typer.Argument(..., help="what the LLM should try or avoid, in plain words"),
          problem: Optional[str] = typer.Option(None, "--problem", help="for one problem only (default: all)")
          ) -> None:
    """Guidance for the next LLM prompts of a campaign (appended to DIR/guidance.jsonl)."""
    from search.guide import GuideError, give_guidance
    try:
        entry = give_guidance(directory, text, problem)
    except GuideError as e:
        _fail(str(e))
    if entry.get("warning"):
        err.print(f"[yellow]warning:[/] {entry['warning']}")
    out.print(f"guidance added to {directory / 'guidance.jsonl'}; the next LLM prompts"
              + (f" for {problem}" if problem else "") + " carry it")


@node_app.command("start")
def node_start(head: bool = typer.Option(False, "--head", help="start a head node"),
               address: Optional[str] = typer.Option(None, "--address", help="join the cluster at ADDR"),
               dry_run: bool = typer.Option(False, "--dry-run", help="print the ray start command only"),
               temp_dir: Optional[str] = typer.Option(None, "--temp-dir"),
               port: Optional[int] = typer.Option(None, "--port"),
               dashboard_port: int = typer.Option(8265, "--dashboard-port"),
               num_cpus: Optional[int] = typer.Option(None, "--num-cpus"),
               ray_args: Optional[list[str]] = typer.Argument(
                   None, help="after --: more `ray start` options, as given (--block, ports, ...)")) -> None:
    """ray start with one hw:<class> resource per detected device. Jobs submitted to the node find this
    installation's kswarm on their PATH."""
    from cluster.node import node_start_cli
    if head == (address is not None):
        _fail("give exactly one of --head or --address ADDR")
    raise typer.Exit(node_start_cli(head=head, address=address, dry_run=dry_run, temp_dir=temp_dir, port=port,
                                    dashboard_port=dashboard_port, num_cpus=num_cpus, extra=ray_args or ()))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
