"""On CUDA (run on the GPU host): the digest of a large input sees one flipped bit and agrees between the parent
and a real sandboxed child, so an honest candidate with a large input is accepted and one that changes a single
element is input_mutated. With ``-s`` it prints how long a 4 GB float32 input's digest takes (not asserted)."""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
import time
from pathlib import Path

import pytest
import torch

from evaluators import digest
from evaluators.pipeline import evaluate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

_CATALOG_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "catalog.py"
_spec = importlib.util.spec_from_file_location("kswarm_fixture_catalog", _CATALOG_PATH)
catalog = sys.modules.get(_spec.name)
if catalog is None:
    catalog = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = catalog
    _spec.loader.exec_module(catalog)


def test_a_4gb_input_digest_sees_one_flipped_bit():
    x = torch.randn(1 << 30, device="cuda")                 # 4 GiB of float32
    seed = digest.seed_for(digest.new_key(), 0)
    digest.tensor_digest(x[: 1 << 20], seed)                  # the first launches, out of the figure
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    before = digest.tensor_digest(x, seed)
    elapsed = time.perf_counter() - t0
    print(f"\ndigest of a 4 GiB float32 input on {torch.cuda.get_device_name()}: {elapsed * 1e3:.1f} ms")
    assert digest.tensor_digest(x, seed) == before
    words = x.view(torch.int32)
    words[(1 << 30) - 5] ^= 1 << 9
    assert digest.tensor_digest(x, seed) != before


@pytest.mark.parametrize(("fid", "expected"), [("honest/clamp_minmax", "accepted"),
                                               ("adversarial/c04_mutates_one_element", "input_mutated"),
                                               ("adversarial/c04_swaps_two_elements", "input_mutated")])
def test_parent_and_child_digests_agree_on_cuda(fid, expected, kswarm_cache_dir):
    fx = {f.id: f for f in catalog.load_fixtures()}[fid]
    request = catalog.build_request(fx, "reject", str(kswarm_cache_dir))
    request = dataclasses.replace(request, device="cuda", scale="large",
                                  verify=dataclasses.replace(request.verify, memory_mb=None))
    result = evaluate(request)
    assert result.status.value == expected, f"{fid}: {result.status.value} ({result.reason})"
