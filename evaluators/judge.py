"""The trusted side of one subject's run: reference outputs, the checks, and the timed loop with random checks.

A *subject* is what runs in a child: a candidate, or the eager or compiled reference (the baselines). Checks are
decided by the parent after each call returns, so a checked call looks exactly like a timed one.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import random
import statistics
import time
import types
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from evaluators import digest
from evaluators import inputs as inp
from evaluators.compare import compare, inputs_unchanged
from evaluators.policy import TimingPolicy, VerifyPolicy
from evaluators.problem import ProblemInfo, load_problem_module
from evaluators.result import Status
from evaluators.sandbox import Child
from evaluators.stats import sample_until

log = logging.getLogger(__name__)
POISON = (float("nan"), -7.77e30, 3.3e4, float("nan"), 1.0e-30)


class Rejected(Exception):
    def __init__(self, status: Status, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def _rejection(reply: Any, what: str, default: str = "runtime_error", limit: int = 400) -> Rejected:
    """What an error reply from the child means: the status it names, on the first line of ``what``. The child
    runs candidate code, so a status the judge does not know, or ``accepted``, is taken as a crash."""
    try:
        status = Status(reply.get("status", default))
    except ValueError:
        status = Status.CRASHED
    if status is Status.ACCEPTED:
        status = Status.CRASHED
    return Rejected(status, (what.splitlines() or [""])[0][:limit])


def timer_kind(device: str) -> str:
    """The timer a device is timed with: cuda, mps, or cpu for everything else."""
    kind = torch.device(device).type
    return kind if kind in ("cuda", "mps") else "cpu"


@dataclasses.dataclass
class Reference:
    """The problem's reference model on the device, built in this (trusted) process."""
    module: types.ModuleType
    info: ProblemInfo
    model: torch.nn.Module
    state_dict: dict[str, torch.Tensor]
    device: str
    seed: int
    out_bytes: int
    in_bytes: int = 0
    call_s: float = 0.0           # the first call's wall time here, inputs included: an upper bound of a call
    _model64: Any = None

    def error_budget(self, inputs: list[Any], outs: list[torch.Tensor]) -> list[torch.Tensor | None] | None:
        """|float32 reference - float64 reference| per float32 output: how far honest float32 arithmetic in
        another order may land. None when the model cannot run in float64."""
        if self._model64 is False or not any(o.dtype == torch.float32 for o in outs):
            return None
        try:
            if self._model64 is None:
                import copy
                self._model64 = copy.deepcopy(self.model).double()
            x64 = [x.double() if isinstance(x, torch.Tensor) and x.dtype == torch.float32 else x for x in inputs]
            with torch.no_grad():
                items, bad = inp.flatten_outputs(self._model64(*x64))
        except Exception as e:  # a model that cannot run in float64 is judged without the budget
            log.info("no float64 reference for %s: %s", self.info.problem_id, e)
            self._model64 = False
            return None
        if bad or len(items) != len(outs):
            return None
        return [(o.double() - r).abs().float() if o.dtype == torch.float32 and r.shape == o.shape else None
                for o, r in zip(outs, items)]

    def run(self, seed: int, probe: str | None = None) -> tuple[list[Any], list[torch.Tensor]]:
        inputs = inp.make_inputs(self.module, seed, self.device, probe)
        with torch.no_grad():
            out = self.model(*inputs)
        items, bad = inp.flatten_outputs(out)
        if bad:
            raise Rejected(Status.BASELINE_ERROR, f"the reference model's output is not supported: {bad}")
        return inputs, [t.detach().clone() for t in items]


def _problem_fault(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"the problem called exit ({e.code!r}); a problem's Model and get_inputs must return, not exit"
    return f"{type(e).__name__}: {e}"


def build_reference(problem_path: str, scale: str, device: str, seed: int) -> Reference:
    module, info = load_problem_module(problem_path, scale)
    try:
        with inp.SEEDED:     # the weights drawn under this seed alone, whatever other threads draw meanwhile
            torch.manual_seed(seed)
            model = module.Model(*module.get_init_inputs())
    except (Exception, SystemExit) as e:   # a problem that calls exit() must not end the evaluator
        raise Rejected(Status.BASELINE_ERROR, f"the reference Model failed to build: {_problem_fault(e)}")
    if isinstance(model, torch.nn.Module):
        model = model.to(device).eval()
        sd = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    else:
        sd = {}
    ref = Reference(module, info, model, sd, device, seed, 0)
    t0 = time.perf_counter()
    try:
        ins, outs = ref.run(seed + 1)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
    except Rejected:
        raise
    except (Exception, SystemExit) as e:
        raise Rejected(Status.BASELINE_ERROR, f"the reference Model failed to run: {_problem_fault(e)}")
    ref.call_s = time.perf_counter() - t0
    ref.out_bytes, ref.in_bytes = inp.nbytes(outs), inp.nbytes(ins)
    return ref


@dataclasses.dataclass
class CheckLog:
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    rel_fro_err: float = 0.0
    probe_verdicts: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    checks: int = 0

    def add(self, c: Any) -> None:
        self.max_abs_err = max(self.max_abs_err, c.max_abs_err)
        self.max_rel_err = max(self.max_rel_err, c.max_rel_err)
        self.rel_fro_err = max(self.rel_fro_err, c.rel_fro_err)
        self.checks += 1


def _input_digests(child: Child | None, ref_inputs: list[Any], after: Any, where: str) -> tuple[Any, Any]:
    """The child's digests of its large inputs and the parent's of its own copies, under a key drawn now: the call
    has returned, so no candidate code runs while the key is known (threads left running and replaced functions
    are caught apart). The parent digests while the child does. (None, None) when every input came back whole."""
    if not isinstance(after, list) or not any(digest.is_placeholder(a) for a in after):
        return None, None
    if child is None:
        raise ValueError("judge_outputs needs the child to ask for the digests of inputs sent as placeholders")
    key = digest.new_key()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kswarm-digest") as pool:
        own = pool.submit(digest.input_digests, ref_inputs, key)
        kind, reply = child.request("digest", {"key": key}, max_bytes=1 << 16)
        own = own.result()
    if kind == "error":
        reply = reply if isinstance(reply, dict) else {}
        raise _rejection(reply, f"{where}: {reply.get('message', 'the digest of the inputs failed')}")
    return (reply.get("digests") if kind == "digests" and isinstance(reply, dict) else None), own


SAMPLED_CHECK_MIN_BYTES = 64 << 20      # a checked timed call's outputs above this are compared on a sample


def _gathered(outs: list[torch.Tensor], sample: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """Each output's elements at its flat indices (the whole output where the index is None)."""
    return [t if idx is None or t.numel() == 0 else t.reshape(-1)[idx.to(t.device)] for t, idx in zip(outs, sample)]


def sample_indices(outs: list[torch.Tensor], rng: random.Random, n: int) -> list[torch.Tensor | None] | None:
    """``n`` flat element indices per output with more than ``n`` elements, drawn from ``rng`` (None for an output
    compared whole); None when no output has more."""
    if all(t.numel() <= n for t in outs):
        return None
    g = torch.Generator().manual_seed(rng.randrange(1 << 62))
    return [torch.randint(0, t.numel(), (n,), generator=g) if t.numel() > n else None for t in outs]


def judge_outputs(reply_kind: str, reply: Any, ref_inputs: list[Any], ref_out: list[torch.Tensor],
                  ref: Reference, policy: VerifyPolicy, log_: CheckLog, where: str,
                  mismatch_status: Status, child: Child | None = None,
                  sample: list[torch.Tensor | None] | None = None) -> None:
    """Raise Rejected unless the child's outputs for this call are acceptable. ``child`` answers for the inputs it
    sent back as digests (all above ``digest.DIGEST_MIN_BYTES``). With ``sample`` (flat element indices per output,
    None for an output sent whole), the child sent those elements of each output and the shapes of the whole: the
    shapes must be the reference's, and the elements are compared with the reference's same elements."""
    if reply_kind == "error":
        raise _rejection(reply, f"{where}: {reply.get('message', 'failed')}")
    if reply.get("bad"):
        raise Rejected(Status.BAD_OUTPUT, f"{where}: {reply['bad']}")
    full_out = ref_out
    if sample is not None:
        shapes = reply.get("shapes")
        want = [list(t.shape) for t in ref_out]
        if shapes != want:
            raise Rejected(Status.BAD_OUTPUT, f"{where}: output shapes {shapes}, expected {want}")
        ref_out = _gathered(ref_out, sample)
    if reply.get("alias"):
        raise Rejected(Status.OUTPUT_ALIASES_INPUT, f"{where}: {reply['alias']}; return a new tensor")
    theirs, own = _input_digests(child, ref_inputs, reply["inputs_after"], where)
    changed = inputs_unchanged(ref_inputs, reply["inputs_after"], theirs, own)
    if changed:
        raise Rejected(Status.INPUT_MUTATED, f"{where}: {changed}; candidates must not modify their inputs")
    c = compare(reply["outputs"], ref_out, reply["devices"], ref.device, policy, ref.info.tolerance)
    if not c.ok:
        # before calling it wrong, allow for the float32 rounding the reference itself makes on these inputs
        budget = ref.error_budget(ref_inputs, full_out)
        if budget is not None and sample is not None:
            budget = [None if b is None else _gathered([b], [idx])[0] for b, idx in zip(budget, sample)]
        if budget is not None:
            c = compare(reply["outputs"], ref_out, reply["devices"], ref.device, policy, ref.info.tolerance,
                        budget=budget)
    if c.structural:
        raise Rejected(Status.BAD_OUTPUT, f"{where}: {c.reason}")
    log_.add(c)
    running = reply.get("threads_running")
    if isinstance(running, list) and running:
        raise Rejected(Status.DEFERRED_WORK, f"{where}: {len(running)} thread(s) started by the candidate were still "
                       "running its code when forward returned (work outside the call); finish all work before "
                       "returning")
    if reply.get("deferred"):
        raise Rejected(Status.DEFERRED_WORK, f"{where}: the output {'changed' if c.ok else 'was still changing'} "
                       "after forward returned (work left on a thread or side stream); finish all work before "
                       "returning")
    if not c.ok:
        raise Rejected(mismatch_status, f"{where}: {c.reason}")


def verify_calls(child: Child, ref: Reference, policy: VerifyPolicy, rng: random.Random, log_: CheckLog,
                 hold: Callable[[], AbstractContextManager] | None = None) -> None:
    """Fresh-seed trials, then domain probes. Raises Rejected on the first failure.

    ``hold``, when given, is the device's shared hold (a verify slot), taken for each call's device work only: the
    reference's and the candidate's call with the outputs' copy to host memory, then the comparison and the
    digests. The outputs cross the pipe between the two holds, so a timing that waits for the device waits for one
    call's device work, not for a whole verification of gigabytes.

    Outputs of more than ``SAMPLED_CHECK_MIN_BYTES``: ``policy.whole_checks`` of the calls (the first trial and
    others drawn here) are compared on every element, the rest on ``policy.timed_check_elements`` elements per
    output drawn after the call, and on the whole shapes; the child stages every call's outputs and learns which
    it is only when asked to send them."""
    max_bytes = 8 * (ref.out_bytes + ref.in_bytes) + (64 << 20)
    probes = [p for p in policy.probes if ref.info.probes is None or p in ref.info.probes]
    plan = [(None, f"trial {k + 1}") for k in range(policy.trials)] + [(p, f"probe {p}") for p in probes]
    # outputs of more than SAMPLED_CHECK_MIN_BYTES: the first trial and whole_checks - 1 more calls drawn now are
    # compared on every element, the others on elements drawn after the call; either way the child stages its
    # outputs and learns which when it is asked to send them
    large = policy.timed_check_elements > 0 and ref.out_bytes > SAMPLED_CHECK_MIN_BYTES
    whole = {0, *rng.sample(range(1, len(plan)), min(len(plan) - 1, max(0, policy.whole_checks - 1)))} if large \
        else set()
    for k, (probe, where) in enumerate(plan):
        seed = rng.randrange(1 << 31)
        with hold() if hold is not None else contextlib.nullcontext():
            ref_inputs, ref_out = ref.run(seed, probe)
            # every other call refills the previous call's input tensors: same addresses, new values
            kind, reply = child.request("check", {"seed": seed, "probe": probe, "poison_bytes": 2 * ref.out_bytes,
                                                  "poison_value": POISON[k % len(POISON)], "reuse": k % 2 == 1,
                                                  "stage": hold is not None or large}, max_bytes=max_bytes,
                                          device=ref.device)
        sample = sample_indices(ref_out, rng, policy.timed_check_elements) if large and k not in whole else None
        if kind == "staged":
            kind, reply = child.request("collect", {} if sample is None else {"sample": sample}, max_bytes=max_bytes,
                                        device=ref.device)
        status = Status.MISMATCH if probe is None else Status.DOMAIN_MISMATCH
        try:
            with hold() if hold is not None else contextlib.nullcontext():
                judge_outputs(kind, reply, ref_inputs, ref_out, ref, policy, log_, where, status, child,
                              sample=sample)
        except Rejected as r:
            if probe is not None:
                log_.probe_verdicts.append((probe, r.reason))
            raise
        if probe is not None:
            log_.probe_verdicts.append((probe, "ok"))


@dataclasses.dataclass
class TimedRun:
    samples_ns: list[int]
    host_ns: list[int]
    checks: int


def ping_overhead(child: Child, n: int = 30) -> float:
    """Median round trip of an empty request, in ns: the host-clock cost of one timed call's messages."""
    rts = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        child.request("ping")
        rts.append(time.perf_counter_ns() - t0)
    return float(statistics.median(rts))


class TimedSubject:
    """One subject's timed calls on fresh inputs, each a prepare (inputs, poison, flush) and a go (the timed call).

    After each call the parent decides, by its own coin, whether to fetch and check that call's output (call n is
    checked with probability min(0.3, timed_checks / n)); ``finish`` checks the last call too, so the child cannot
    know which call is unchecked. With ``check_every`` every call is checked; with ``check`` off (a baseline: the
    reference itself) none is."""

    def __init__(self, child: Child, ref: Reference, policy: VerifyPolicy, rng: random.Random, log_: CheckLog, *,
                 flush: bool, check: bool = True, check_every: bool = False):
        self.child, self.ref, self.policy, self.rng, self.log = child, ref, policy, rng, log_
        self.flush, self.check, self.check_every = flush, check, check_every
        self.samples: list[int] = []
        self.host: list[int] = []
        self.checks = 0
        self.check_s = 0.0                   # wall seconds in the checks of timed calls (reference, fetch, compare)
        self._calls = 0
        self._last: int | None = None        # the seed of the last call while it is unchecked

    def call(self) -> int:
        """One timed call; its raw time in ns."""
        seed = self.rng.randrange(1 << 31)
        where = f"timed call {self._calls + 1}"
        kind, reply = self.child.request("prepare", {
            "seed": seed, "poison_bytes": 2 * self.ref.out_bytes, "poison_value": POISON[self._calls % len(POISON)],
            "flush": self.flush, "reuse": self.rng.random() < 0.5})
        self._calls += 1
        if kind == "error":
            raise _rejection(reply, f"{where}: {reply.get('message', '')}")
        t0 = time.perf_counter_ns()
        kind, reply = self.child.request("go", {})
        rt = time.perf_counter_ns() - t0
        if kind == "error":
            raise _rejection(reply, f"{where}: {reply.get('message', '')}")
        # the output snapshot after the timer stopped is the harness's work, not the call's
        rt -= max(0, min(int(reply.get("post_ns", 0)), rt // 2))
        ns = int(reply["ns"])
        if ns <= 0 or ns > rt:
            raise Rejected(Status.TIMING_INCONSISTENT, f"{where}: the child reported {ns / 1e6:.3f} ms but the "
                           f"host clock saw only {rt / 1e6:.3f} ms for the whole call")
        self.samples.append(ns)
        self.host.append(rt)
        self._last = seed
        # about timed_checks * ln(n) checks in n calls, spread over the whole run
        if self.check and (self.check_every or self.rng.random() < min(0.3, self.policy.timed_checks / self._calls)):
            self._check_last()
        return ns

    def _check_last(self) -> None:
        seed, self._last = self._last, None
        self.checks += 1
        t0 = time.monotonic()
        try:
            ref_inputs, ref_out = self.ref.run(seed)
            # on outputs of more than SAMPLED_CHECK_MIN_BYTES, elements drawn now, after the call: the outputs of
            # gigabytes then do not cross the pipe inside the timing slot, and the child cannot know which count
            n = self.policy.timed_check_elements
            sample = sample_indices(ref_out, self.rng, n) if n > 0 and inp.nbytes(ref_out) > \
                SAMPLED_CHECK_MIN_BYTES else None
            kind, reply = self.child.request("fetch", {} if sample is None else {"sample": sample},
                                             device=self.ref.device)
            judge_outputs(kind, reply, ref_inputs, ref_out, self.ref, self.policy, self.log,
                          f"timed call {self._calls} (checked at random)", Status.TIMED_MISMATCH, self.child,
                          sample=sample)
        finally:
            self.check_s += time.monotonic() - t0

    def finish(self) -> TimedRun:
        """Check the last call if its coin left it unchecked; the run so far."""
        if self.check and self._last is not None:
            self._check_last()
        return TimedRun(self.samples, self.host, self.checks)


def timed_loop(child: Child, ref: Reference, policy: VerifyPolicy, timing: TimingPolicy, rng: random.Random,
               log_: CheckLog, *, n_calls: int | None = None, flush: bool = True,
               check: bool = True) -> TimedRun:
    """Time calls on fresh inputs until the sampling rule stops (``stats.sample_until``: the CI target, the sample
    cap or the time cap), or exactly ``n_calls`` calls, each of them checked."""
    subject = TimedSubject(child, ref, policy, rng, log_, flush=flush, check=check, check_every=n_calls is not None)
    if n_calls is not None:
        for _ in range(n_calls):
            subject.call()
    else:
        sample_until(subject.call, timing)
    return subject.finish()


def host_clock_consistent(run: TimedRun, ping_ns: float) -> str | None:
    """None when the child's samples agree with the parent's clock; otherwise the reason they do not.

    Each timed call's host round trip is the child's time plus messaging. A child that slows its own clock reports
    much less than the host saw, beyond what the messaging (measured before any candidate code ran) explains."""
    # The quietest quarter of the calls decides: on a loaded machine some calls wait for a core after the timer
    # stops, but a timer that runs slow under-reports every call.
    # A gap under the noise floor (a scheduling delay on a busy machine) never counts, however short the call.
    floor = 1_000_000 + 5 * ping_ns
    gaps = sorted(h - ping_ns - c for c, h in zip(run.samples_ns, run.host_ns))
    if len(gaps) < 4:
        return None
    quiet_gap = gaps[len(gaps) // 4]
    quiet = quiet_gap / statistics.median(run.host_ns)
    if quiet_gap > floor and quiet > 0.25:
        child_med = statistics.median(run.samples_ns)
        host_med = statistics.median(run.host_ns)
        return (f"the child timed a median of {child_med / 1e6:.3f} ms per call but the host clock saw "
                f"{host_med / 1e6:.3f} ms ({ping_ns / 1e6:.3f} ms of it messaging), and {quiet:.0%} of even the "
                "quietest calls is unexplained; its timer is not to be trusted")
    return None


def audit(child: Child, settings_before: dict[str, Any]) -> None:
    """Raise Rejected if the judge's functions were replaced or global settings changed, or threads remain."""
    kind, reply = child.request("audit", {})
    if kind == "error":
        raise _rejection(reply, reply.get("message", "audit failed"))
    replaced = reply.get("replaced") or []
    if replaced:
        shown = ", ".join(replaced[:5]) + (" ..." if len(replaced) > 5 else "")
        raise Rejected(Status.TAMPERING, f"candidate code replaced {len(replaced)} function(s) the judge relies on: "
                       f"{shown}; candidates must not monkeypatch torch, timers or the harness")
    left = reply.get("threads_left") or []
    if left:
        shown = ", ".join(left[:3]) + (" ..." if len(left) > 3 else "")
        raise Rejected(Status.DEFERRED_WORK, f"candidate code left {len(left)} thread(s) running its own code "
                       f"({shown}); do all work inside forward on the calling thread")
    after = reply.get("settings") or {}
    changed = [f"{k}: {settings_before.get(k)!r} -> {after.get(k)!r}" for k in settings_before
               if after.get(k) != settings_before.get(k)]
    if changed:
        raise Rejected(Status.GLOBAL_STATE_CHANGED, "candidate code changed global settings (" + "; ".join(changed)
                       + "); the baselines run with the defaults, so the candidate must too")


def init_child(child: Child, subject: str, ref: Reference, *, candidate_path: Path | None,
               warmup: int, compile_options: dict[str, Any] | None = None, digest_inputs: bool = True
               ) -> dict[str, Any]:
    kind, reply = child.request("init", {
        "digest_inputs": bool(digest_inputs),
        "subject": subject, "problem_path": str(Path(ref.info.path).resolve()), "scale": ref.info.scale,
        "device": ref.device, "seed": ref.seed, "state_dict": ref.state_dict, "timer": timer_kind(ref.device),
        "candidate_path": str(candidate_path) if candidate_path else None, "warmup": warmup,
        "compile_options": compile_options or {},
    })
    if kind == "error":
        tb = (reply.get("traceback") or "").strip().splitlines()
        where = ""
        for line in reversed(tb):
            if "candidate" in line and "line" in line:
                where = " at " + line.strip()
                break
        raise _rejection(reply, f"building or warming up the {subject} failed: {reply.get('message', '')}{where}",
                         default="compile_error", limit=500)
    return reply
