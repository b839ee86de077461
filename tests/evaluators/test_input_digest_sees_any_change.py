"""The keyed digest of a large input sees any change of its bytes (one flipped bit, a swap of two elements, a change
that keeps the sum), gives equal digests for equal contents under one key and different ones under different keys;
the parent's comparison reads the child's digests as hostile data; the guard knows every op the digest reaches and
refuses when that op could reach code other than torch's own kernels."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from evaluators import digest
from evaluators.compare import inputs_unchanged

REPO = Path(__file__).resolve().parents[2]
KEY = 0x2545F4914F6CDD1D
N = (digest.DIGEST_MIN_BYTES // 4) + 12_345          # float32 elements: above the threshold, not a whole slice
SMALL_SLICE = 1000                                   # many slices and a shorter last one


def big(seed: int = 0) -> torch.Tensor:
    return torch.randn(N, generator=torch.Generator().manual_seed(seed))


def flip_bit(t: torch.Tensor, word: int, bit: int) -> torch.Tensor:
    out = t.clone()
    words = out.view(torch.int32)
    words[word] = int(words[word]) ^ (1 << bit) if bit < 31 else int(words[word]) ^ -(1 << 31)
    return out


@pytest.mark.parametrize("slice_words", [None, SMALL_SLICE], ids=["device-slices", "small-slices"])
@pytest.mark.parametrize(("word", "bit"), [(0, 0), (N // 2, 31), (N - 1, 17), (SMALL_SLICE, 7)],
                         ids=["first-word-low-bit", "middle-sign-bit", "last-word", "slice-boundary"])
def test_one_flipped_bit_anywhere_changes_the_digest(word, bit, slice_words):
    x = big()
    seed = digest.seed_for(KEY, 0)
    changed = flip_bit(x, word, bit)
    assert not torch.equal(changed.view(torch.int32), x.view(torch.int32))
    assert digest.tensor_digest(changed, seed, slice_words) != digest.tensor_digest(x, seed, slice_words)


def test_equal_contents_give_equal_digests_whatever_the_layout():
    x = big()
    seed = digest.seed_for(KEY, 0)
    assert digest.tensor_digest(x, seed) == digest.tensor_digest(x.clone(), seed)
    m = torch.randn(1200, 700)
    transposed = m.t()                       # not contiguous: digested by its logical contents
    assert not transposed.is_contiguous()
    assert digest.tensor_digest(transposed, seed) == digest.tensor_digest(transposed.contiguous(), seed)
    assert digest.tensor_digest(transposed, seed) != digest.tensor_digest(m, seed)


def test_different_keys_give_different_digests():
    x = big()
    assert digest.tensor_digest(x, digest.seed_for(KEY, 0)) != digest.tensor_digest(x, digest.seed_for(KEY + 1, 0))
    # each input has its own stream under one key
    assert digest.tensor_digest(x, digest.seed_for(KEY, 0)) != digest.tensor_digest(x, digest.seed_for(KEY, 1))
    assert len({digest.new_key() for _ in range(8)}) == 8


def test_a_permutation_and_a_sum_preserving_change_are_seen():
    x = big()
    seed = digest.seed_for(KEY, 0)
    swapped = x.clone()
    swapped[[3, N - 4]] = x[[N - 4, 3]]
    assert not torch.equal(swapped, x) and torch.equal(swapped.sort().values, x.sort().values)
    assert digest.tensor_digest(swapped, seed) != digest.tensor_digest(x, seed)
    words = x.clone().view(torch.int32)
    words[10] += 1
    words[11] -= 1                           # the words' sum is unchanged
    assert digest.tensor_digest(words.view(torch.float32), seed) != digest.tensor_digest(x, seed)


def test_sign_flips_are_seen():
    """A change confined to the sign bits (neg_, abs_) is the digest's worst case (2**-32 per lane)."""
    x = big()
    seed = digest.seed_for(KEY, 0)
    assert digest.tensor_digest(-x, seed) != digest.tensor_digest(x, seed)
    assert digest.tensor_digest(x.abs(), seed) != digest.tensor_digest(x, seed)


@pytest.mark.parametrize(("dtype", "numel"), [(torch.uint8, (1 << 20) + 3), (torch.float16, (1 << 19) + 1)],
                         ids=["odd-byte-count", "two-byte-words"])
def test_byte_counts_that_are_not_whole_int32_words(dtype, numel):
    x = torch.randint(0, 100, (numel,), dtype=torch.uint8).to(dtype)
    seed = digest.seed_for(KEY, 0)
    y = x.clone()
    y.view(torch.uint8)[-1] ^= 0x10
    assert digest.digested(x)
    assert digest.tensor_digest(y, seed) != digest.tensor_digest(x, seed)
    assert digest.tensor_digest(x.clone(), seed) == digest.tensor_digest(x, seed)


def test_only_dense_inputs_above_the_threshold_are_digested():
    at = torch.zeros(digest.DIGEST_MIN_BYTES // 4)
    above = torch.zeros(digest.DIGEST_MIN_BYTES // 4 + 1)
    assert not digest.digested(at) and digest.digested(above)
    assert not digest.digested(3) and not digest.digested(above.to_sparse())
    p = digest.placeholder(above)
    assert digest.is_placeholder(p) and p["shape"] == [above.numel()] and p["dtype"] == "torch.float32"
    assert not digest.is_placeholder(above) and not digest.is_placeholder({"digested": 1})


# --- the parent's comparison -----------------------------------------------------------------------------------

def test_the_comparison_takes_matching_digests_and_rejects_anything_else():
    x, small = big(), torch.arange(4.0)
    own = digest.input_digests([x, small, 7], KEY)
    assert own[1] is None and own[2] is None
    after = [digest.placeholder(x), small.clone(), 7]
    assert inputs_unchanged([x, small, 7], after, list(own), own) is None
    moved = flip_bit(x, 5, 3)
    theirs = digest.input_digests([moved, small, 7], KEY)
    assert inputs_unchanged([x, small, 7], after, theirs, own) == "input 0 was modified in place"
    # what a hostile child may send instead of a digest: never an exception, always a rejection
    for forged in (None, [], [None], [own[0][0]], [torch.tensor(own[0])], [tuple(own[0])],
                   [[float(v) for v in own[0]]], "x", [{"a": 1}]):
        assert inputs_unchanged([x, small, 7], after, forged, own) == "input 0 was modified in place", forged
    assert inputs_unchanged([x], [{**digest.placeholder(x), "shape": [1, N]}], [own[0]], own[:1]) == \
        "input 0 changed shape or type"
    assert inputs_unchanged([x], [digest.placeholder(x.double())], [own[0]], own[:1]) == "input 0 changed shape or type"


def test_a_small_input_must_come_back_whole():
    small = torch.arange(16.0)
    assert inputs_unchanged([small], [digest.placeholder(small)], [[0, 0]], [[0, 0]]) == \
        "input 0 changed shape or type"
    assert inputs_unchanged([small], [small.clone()]) is None


# --- what the digest reaches, and the guard ---------------------------------------------------------------------

def test_the_guard_covers_every_op_the_digest_reaches():
    seen: set[str] = set()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = str(func._schema.name)
            seen.add(name if func._overloadname == "default" else f"{name}.{func._overloadname}")
            return func(*args, **(kwargs or {}))

    for t in (torch.randn(5000), torch.randn(90, 70).t(), torch.zeros(7, dtype=torch.uint8),
              torch.zeros(3, dtype=torch.float16)):
        with Record():
            digest.tensor_digest(t, 1, slice_words=64)
    assert seen and not seen - set(digest.DIGEST_OPS)
    # the ops called by name before any decomposition
    assert {"aten::narrow", "aten::reshape", "aten::contiguous", "aten::view.dtype"} <= set(digest.DIGEST_OPS)
    guard = digest.Guard("cpu")
    assert guard.broken() is None
    assert all(guard.tables[op] for op in ("aten::mul_.Tensor", "aten::random_.from", "aten::sum"))


GUARD_SCRIPT = textwrap.dedent("""
    import sys, warnings
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from evaluators import digest

    guard = digest.Guard("cpu")
    assert guard.broken() is None
    step = sys.argv[1]
    if step == "dispatch-mode":
        class Passthrough(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                return func(*args, **(kwargs or {}))
        Passthrough().__enter__()            # left on the stack, as a candidate would leave it
    elif step == "function-mode":
        from torch.overrides import TorchFunctionMode
        TorchFunctionMode().__enter__()
    elif step == "library":
        lib = torch.library.Library("aten", "IMPL")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lib.impl("sum", lambda t, dtype=None: torch.zeros((), dtype=torch.int64), "CPU")
    elif step == "python-dispatcher":
        kept = torch._C._EnablePythonDispatcher()    # a guard object kept alive, entered and never left
        kept.__enter__()
    elif step == "trace":
        sys.setprofile(lambda *a: None)
    reason = guard.broken()
    sys.setprofile(None)
    print("BROKEN:" + (reason or ""))
""")


@pytest.mark.parametrize(("step", "words"), [
    ("none", None), ("dispatch-mode", "dispatch mode"), ("function-mode", "function or dispatch mode"),
    ("library", "aten::sum"), ("python-dispatcher", "PythonDispatcher"), ("trace", "profile function")])
def test_the_guard_sees_what_would_redirect_the_digest(step, words):
    """In a process of its own: what a candidate would leave behind is not undone here."""
    proc = subprocess.run([sys.executable, "-c", GUARD_SCRIPT, step], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reason = proc.stdout.strip().splitlines()[-1].removeprefix("BROKEN:")
    if words is None:
        assert reason == ""
    else:
        assert words in reason, reason
