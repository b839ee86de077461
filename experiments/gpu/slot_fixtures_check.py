"""The verifier's fixtures judged on a CUDA device the way a campaign's evaluator judges them: with a shared device
slot, so each verification call holds the device only for its device work and its outputs cross the pipe staged in
host memory (``verify_calls(hold=...)``). The verdicts must be the catalogue's, as without a slot.

From the repository root on a CUDA host:  PYTHONPATH=. python3 experiments/gpu/slot_fixtures_check.py [glob...]
Prints one line per fixture and ``RESULT: PASS`` or ``RESULT: FAIL``; exit status 0 only on PASS.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEVICE = os.environ.get("KSWARM_CHECK_DEVICE", "cuda")      # "cpu" runs the same path here, for the script's test
DEFAULT = ["gpu/*", "adversarial/c01_*", "adversarial/c02_*", "adversarial/c04_*", "adversarial/c05_*",
           "adversarial/c06_*", "adversarial/c07_*", "adversarial/c15_*", "honest/clamp_minmax",
           "honest/stable_softmax_manual", "honest/algebraic_rewrite_merged_linears"]


def _catalog():
    spec = importlib.util.spec_from_file_location("kswarm_fixture_catalog", ROOT / "tests/fixtures/catalog.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def main(patterns: list[str]) -> int:
    from evaluators.pipeline import evaluate
    from search.protocol import DeviceSlot
    catalog = _catalog()
    fixtures = [fx for fx in catalog.load_fixtures() if any(fnmatch.fnmatch(fx.id, p) for p in patterns)]
    slot = DeviceSlot(2)
    failed = 0
    with tempfile.TemporaryDirectory() as cache:
        for fx in fixtures:
            static = "warn" if fx.kind == "adversarial" else "reject"
            req = dataclasses.replace(catalog.build_request(fx, static, cache), device=DEVICE)
            if fx.id.startswith("gpu/") and DEVICE == "cuda":
                req = dataclasses.replace(req, scale="large")
            t0 = time.monotonic()
            result = evaluate(req, timing_slot=slot)
            expected = fx.expected[static]
            ok = result.status.value in expected
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {fx.id}: {result.status.value} (expected {'|'.join(expected)}) "
                  f"{time.monotonic() - t0:.1f} s; {result.reason[:140]}", flush=True)
    print(f"{len(fixtures) - failed} of {len(fixtures)} as expected")
    print("RESULT:", "PASS" if fixtures and not failed else "FAIL")
    return 0 if fixtures and not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or DEFAULT))
