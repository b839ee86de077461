"""Tokens per evaluation of the LLM proposer, counted by the loopback server (no real model is reached).

Runs a whole campaign (`kswarm run`, local Ray, CPU) whose llm proposer talks to the loopback Messages API of
tests/proposers/llm_loopback.py. The scripted model answers the ideator with ideas, the coder with a different
valid module per attempt (every third one fails to build, so the fixer works too), and the fixer with a valid module.
The server counts a token per 4 characters and treats the system blocks up to the cache mark as a cached prefix
(written once, read after). Prints per role and per evaluation: requests, input, output, cache writes and reads.

    .venv/bin/python experiments/llm_tokens.py --evaluations 8 --out tmp/llm-tokens
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "proposers"))
sys.path.insert(0, str(REPO))

from llm_loopback import Loopback, fenced, leaky_module  # noqa: E402

BODIES = ["torch.where(x > 0, x, x * self.negative_slope)", "torch.maximum(x, x * self.negative_slope)",
          "x.clamp(min=0) + self.negative_slope * x.clamp(max=0)", "torch.nn.functional.leaky_relu(x, self.negative_slope)",
          "x * torch.where(x > 0, 1.0, self.negative_slope)", "torch.max(x, self.negative_slope * x)"]
IDEAS = "\n".join(f"- [torch] {b.split('(')[0]} formulation of the leaky ReLU" for b in BODIES)


def responder(role: str, prompt: str, body: dict) -> str:
    if role == "ideator":
        return IDEAS
    if role == "fixer":
        return fenced(leaky_module("torch.where(x >= 0, x, self.negative_slope * x)"), "Fixed: the import is gone.")
    attempt = int(prompt.split("(attempt ")[1].split(")")[0])
    if attempt % 3 == 0:
        return fenced(leaky_module("fused(x)", header="from torch import fused_leaky as fused"))
    return fenced(leaky_module(BODIES[attempt % len(BODIES)] + (f" + 0 * {attempt}" if attempt >= len(BODIES)
                                                               else "")), "Here is the module.")


def campaign(out: Path, problem: Path, evaluations: int) -> Path:
    toml = out / "campaign.toml"
    toml.write_text(f"""
[campaign]
name = "llm-tokens"
out = "run"

[budget]
max_evaluations = {evaluations}
max_minutes = 30

[[problems]]
path = "{problem}"

[[targets]]
hardware = "cpu"

[[proposers]]
kind = "llm"
model = "claude-sonnet-4-5"
concurrency = 2
per_generation = 1
ideas_per_call = 4

[timing]
time_cap_s = 0.5
min_samples = 5
baselines = ["eager"]
""")
    return toml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problem", default=str(REPO / "experiments/problems/level1/leaky_relu.py"))
    ap.add_argument("--evaluations", type=int, default=8)
    ap.add_argument("--out", default=str(REPO / "tmp" / "llm-tokens"))
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    toml = campaign(out, Path(args.problem).resolve(), args.evaluations)
    t0 = time.monotonic()
    with Loopback(responder) as lb:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "ANTHROPIC_API_KEY": "sk-loopback",
               "ANTHROPIC_BASE_URL": lb.url}
        env.pop("RAY_ADDRESS", None)
        done = subprocess.run([sys.executable, "-m", "kswarm.cli", "run", str(toml)], env=env, cwd=REPO,
                              capture_output=True, text=True, start_new_session=True)
        answered = list(lb.answered)
    if done.returncode != 0:
        sys.exit(f"the campaign failed: {done.stderr[-2000:]}")
    from search.population import read_population
    rows = read_population(out / "run").to_pylist()
    n = len(rows)
    keys = ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens")
    by_role: dict[str, dict[str, int]] = {}
    for a in answered:
        r = by_role.setdefault(a["role"], {"requests": 0, **{k: 0 for k in keys}})
        r["requests"] += 1
        for k in keys:
            r[k] += a[k]
    total = {k: sum(r[k] for r in by_role.values()) for k in ("requests", *keys)}
    result = {"evaluations": n, "statuses": {s: sum(1 for r in rows if r["status"] == s) for s in {r["status"] for r in rows}},
              "by_role": by_role, "total": total,
              "per_evaluation": {k: total[k] / n for k in total} if n else {},
              "wall_s": round(time.monotonic() - t0, 1)}
    (out / "tokens.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    print(f"{n} evaluations ({result['statuses']}), {total['requests']} requests, {result['wall_s']} s")
    print(f"{'role':10} {'requests':>8} {'input':>8} {'output':>8} {'cache_w':>8} {'cache_r':>8}")
    for role, r in sorted(by_role.items()) + [("total", total)]:
        print(f"{role:10} {r['requests']:8d} " + " ".join(f"{r[k]:8d}" for k in keys))
    if n:
        print(f"{'per eval':10} {total['requests'] / n:8.2f} " + " ".join(f"{total[k] / n:8.0f}" for k in keys))


if __name__ == "__main__":
    main()
