"""Fuzz every untrusted-input parser with hypothesis and count what happened: cases run, inputs accepted, the
project's own errors, and tracebacks (any other exception, which must be zero).

    .venv/bin/python experiments/fuzz_inputs.py [--scale N] [--cli-runs K]

``--scale`` multiplies the example counts (1: about the CI tests' counts). The hypothesis strategies and input
builders are the hardening tests' own (tests/hardening), so the experiment fuzzes exactly what CI fuzzes, at a
larger count. Prints a markdown table; the numbers in experiments/results/2026-12-02-fuzz.md come from it.
"""
from __future__ import annotations

import argparse
import collections
import copy
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "hardening")]

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import test_damaged_checkpoint_or_journal_part_falls_back_to_last_good_state as dmg  # noqa: E402
import test_fuzz_campaign_file as camp  # noqa: E402
import test_fuzz_problem_and_candidate_loaders as loaders  # noqa: E402
import test_fuzz_wire_frames as wirefuzz  # noqa: E402
from evaluators import wire  # noqa: E402
from evaluators.judge import Rejected, build_reference  # noqa: E402
from evaluators.problem import BadInput, check_candidate_source, load_problem_module  # noqa: E402
from search.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from search.config import ConfigError, load_config  # noqa: E402
from search.population import Population  # noqa: E402
from tomlgen import toml_document  # noqa: E402


class Tally:
    def __init__(self) -> None:
        self.rows: dict[str, collections.Counter] = {}
        self.tracebacks: dict[str, list[str]] = collections.defaultdict(list)
        self.seconds: dict[str, float] = {}

    def run(self, target: str, fn: Callable[[], str]) -> None:
        """One case: ``fn`` returns an outcome name; an exception it lets through is a traceback."""
        counter = self.rows.setdefault(target, collections.Counter())
        counter["cases"] += 1
        try:
            counter[fn()] += 1
        except Exception:   # the finding this experiment counts
            counter["tracebacks"] += 1
            self.tracebacks[target].append(traceback.format_exc(limit=3)[-600:])


def fuzz(tally: Tally, target: str, n: int, strategy: Any, case: Callable[..., str]) -> None:
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def loop(value: Any) -> None:
        tally.run(target, lambda: case(value))

    t0 = time.perf_counter()
    loop()
    tally.seconds[target] = tally.seconds.get(target, 0.0) + time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=10.0)
    ap.add_argument("--cli-runs", type=int, default=20)
    args = ap.parse_args()
    n = lambda base: max(1, int(base * args.scale))  # noqa: E731
    tally = Tally()
    for name in ("search.journal", "search.checkpoint"):   # each damaged copy is logged; the counts say it here
        logging.getLogger(name).setLevel(logging.CRITICAL)
    work = Path(tempfile.mkdtemp(prefix="kswarm-fuzz-"))
    (work / "problems" / "level1").mkdir(parents=True)
    (work / "problems" / "level1" / "add_one.py").write_text(camp.PROBLEM)
    (work / "hand").mkdir()

    def campaign(data: bytes) -> str:
        f = work / "c.toml"
        f.write_bytes(data)
        try:
            load_config(f)
            return "loaded"
        except ConfigError as e:
            assert str(e).startswith(f"{f}: ") and "\n" not in str(e), str(e)
            return "config_error"

    fuzz(tally, "campaign file: random bytes", n(300), st.binary(max_size=400), campaign)
    base = toml_document(camp.base_campaign()).encode()
    fuzz(tally, "campaign file: bytes spliced into a valid file", n(300),
         st.tuples(st.binary(max_size=200), st.integers(0, len(base))),
         lambda v: campaign(base[:v[1]] + v[0] + base[v[1]:]))

    def mutated(ops: list) -> str:
        doc = copy.deepcopy(camp.base_campaign())
        for op in ops:
            camp.mutate(doc, *op)
        return campaign(toml_document(doc).encode())

    fuzz(tally, "campaign file: mutated TOML", n(300), st.lists(camp.mutations, min_size=1, max_size=4), mutated)

    def problem(source: str | bytes, scale: str = "default", reference: bool = False) -> str:
        path = loaders.write(work, "p.py", source)
        try:
            load_problem_module(str(path), scale)
        except BadInput as e:
            assert "\n" not in str(e)
            return "bad_input"
        if not reference:
            return "loaded"
        try:
            build_reference(str(path), scale, "cpu", seed=0)
            return "reference_built"
        except BadInput:
            return "bad_input"
        except Rejected:
            return "baseline_error"

    fuzz(tally, "problem loader: random text", n(150), st.text(max_size=300), problem)
    fuzz(tally, "problem loader: random bytes", n(150), st.binary(max_size=300), problem)
    fuzz(tally, "problem + reference: assembled files", n(150),
         st.tuples(st.sampled_from(loaders.MODELS), st.sampled_from(loaders.GET_INPUTS),
                   st.sampled_from(loaders.GET_INIT_INPUTS), st.lists(st.sampled_from(loaders.OPTIONS), max_size=2),
                   st.sampled_from(["default", "large", "nope"])),
         lambda v: problem(loaders.HEADER + v[0] + v[1] + v[2] + "".join(v[3]), v[4], reference=True))

    def candidate(source: str) -> str:
        try:
            check_candidate_source(source, "c.py")
            return "accepted"
        except BadInput as e:
            assert "\n" not in str(e)
            return "bad_input"

    fuzz(tally, "candidate loader: random text", n(150), st.text(max_size=300), candidate)
    fuzz(tally, "candidate loader: assembled files", n(150),
         st.tuples(st.lists(st.sampled_from(loaders.CANDIDATE_SHAPES), min_size=1, max_size=3), st.text(max_size=20)),
         lambda v: candidate(loaders.HEADER + "".join(v[0]) + v[1]))

    def frame(data: bytes) -> str:
        try:
            wirefuzz.read_frame(data)
            return "read"
        except wire.WireError:
            return "wire_error"

    fuzz(tally, "wire: random bytes", n(300), st.binary(max_size=2048), frame)
    fuzz(tally, "wire: truncated frames", n(300), st.tuples(wirefuzz.payloads, st.integers(min_value=0)),
         lambda v: (lambda d: frame(d[:v[1] % len(d)]))(wirefuzz.encode("outputs", v[0])))

    def corrupt(v) -> str:
        data = bytearray(wirefuzz.encode("outputs", v[0]))
        at = v[1] % len(data)
        if v[3]:
            data.insert(at, v[2])
        else:
            data[at] = v[2]
        return frame(bytes(data))

    fuzz(tally, "wire: corrupted frames", n(300),
         st.tuples(wirefuzz.payloads, st.integers(min_value=0), st.integers(0, 255), st.booleans()), corrupt)
    fuzz(tally, "wire: hostile headers", n(300),
         st.tuples(wirefuzz.hostile_values, wirefuzz.hostile_values, wirefuzz.hostile_values, st.binary(max_size=64)),
         lambda v: frame(wirefuzz.frame({"kind": v[0], "payload": v[1], "sizes": v[2]}, v[3])))

    def checkpoint(v) -> str:
        d = Path(tempfile.mkdtemp(dir=work))
        save_checkpoint(d, dmg.STATE)
        files = [d / dmg.CHECKPOINT_FILE, d / dmg.BACKUP_FILE]
        dmg.damage(files[v[2]], v[0], v[1])
        if v[3]:
            dmg.damage(files[1 - v[2]], v[3], v[4])
        try:
            got = load_checkpoint(d)
        except CheckpointError:
            return "checkpoint_error (both copies damaged)"
        assert dmg.same_state(got, dmg.STATE)
        return "saved state recovered"

    fuzz(tally, "checkpoint: damaged copies", n(200),
         st.tuples(st.sampled_from(["truncate", "flip"]), st.floats(0, 1), st.sampled_from([0, 1]),
                   st.sampled_from([None, "truncate", "flip"]), st.floats(0, 1)), checkpoint)

    def part(v) -> str:
        d = Path(tempfile.mkdtemp(dir=work))
        parts = dmg.journal_with_three_parts(d)
        dmg.damage(parts[1], v[0], v[1])
        with Population.open(d, writer=True) as pop:
            rows = len(pop)
        assert rows in (80, 120)
        return "part set aside, others read" if rows == 80 else "damage harmless (rows intact)"

    fuzz(tally, "journal: damaged part", n(40), st.tuples(st.sampled_from(["truncate", "flip"]), st.floats(0, 1)),
         part)

    # kswarm run on random bytes, as a user would: exit code 2, one line, no traceback
    script = Path(sys.executable).parent / "kswarm"
    target = "kswarm run: random-byte campaign files"
    t0 = time.perf_counter()
    for i in range(args.cli_runs):
        f = work / f"cli{i}.toml"
        f.write_bytes(random.Random(i).randbytes(random.Random(i).randint(1, 400)))

        def cli() -> str:
            p = subprocess.run([str(script), "run", str(f), "--out", str(work / f"out{i}")], capture_output=True,
                               text=True, timeout=120, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
            lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
            if "Traceback" in p.stderr + p.stdout:
                raise RuntimeError(p.stderr[-400:])
            assert p.returncode == 2 and len(lines) == 1 and not (work / f"out{i}").exists(), p.stderr
            return "exit 2, one line, nothing written"

        tally.run(target, cli)
    tally.seconds[target] = time.perf_counter() - t0

    print("| target | cases | outcomes | tracebacks | seconds |")
    print("|---|---:|---|---:|---:|")
    for name, c in tally.rows.items():
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if k not in ("cases", "tracebacks"))
        print(f"| {name} | {c['cases']} | {outcomes} | {c['tracebacks']} | {tally.seconds.get(name, 0):.0f} |")
    total = sum(c["cases"] for c in tally.rows.values())
    tbs = sum(c["tracebacks"] for c in tally.rows.values())
    print(f"\n{total} cases, {tbs} tracebacks")
    for name, tb in tally.tracebacks.items():
        print(f"\n## {name}: {len(tb)} tracebacks, first:\n```\n{tb[0]}\n```")
    sys.exit(1 if tbs else 0)


if __name__ == "__main__":
    main()
