"""The sandboxed child: builds one subject (a candidate, or the eager or compiled reference) and runs it on request.

Run as ``python -m evaluators.child RFD WFD LIMITS_JSON``. It answers the parent's frames on its pipes and never
sees a reference output. Everything it reports is checked by the parent, which treats it as hostile: the child
only measures, the parent judges.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

from evaluators.child_limits import apply_limits


def main() -> None:
    rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
    limits = json.loads(sys.argv[3])
    applied = apply_limits(limits)
    os.set_inheritable(rfd, False)
    os.set_inheritable(wfd, False)
    # Imports after the limits; the timers and the wire are bound now, before any candidate code exists.
    import torch

    from evaluators import digest
    from evaluators import inputs as inp
    from evaluators import integrity, timers, wire

    _bring_up(torch, limits.get("device", "cpu"))
    # torch's lazy patches (importing dynamo: over a second on a CPU) made while a spare waits, not at its init
    integrity.settle_torch()

    state: dict = {"applied": applied, "digest": digest}
    try:
        while True:
            kind, msg = wire.recv(rfd)
            if kind == "bye":               # flushed first: the parent may kill the process once answered
                sys.stdout.flush()
                sys.stderr.flush()
                wire.send(wfd, "bye")
                break
            handler = _HANDLERS.get(kind)
            if handler is None:
                wire.send(wfd, "error", {"status": "crashed", "message": f"unknown request {kind!r}"})
                continue
            try:
                reply_kind, reply = handler(state, msg, torch=torch, inp=inp, timers=timers, integrity=integrity)
            except Exception as e:  # a candidate fault: report it, the parent decides what it means
                tb = traceback.format_exc(limit=6)
                status = state.get("fault_status", "runtime_error")
                reply_kind, reply = "error", {"status": status, "message": f"{type(e).__name__}: {e}",
                                              "traceback": tb[-4000:]}
            wire.send(wfd, reply_kind, reply)
    except wire.WireError:
        pass
    sys.stdout.flush()
    sys.stderr.flush()


def _bring_up(torch, device: str) -> None:
    """The device context, made while the child waits for its first request (a warm spare): a failure here is
    left for the subject's build to report."""
    try:
        if device.startswith(("cuda", "mps")):
            torch.empty(1, device=device)
    except Exception:
        pass


def _h_init(state, msg, *, torch, inp, timers, integrity):
    from evaluators.problem import load_problem_module

    device = msg["device"]
    state["device"] = device
    state["digest_inputs_on"] = bool(msg.get("digest_inputs", True))   # [verify] digest_inputs
    problem, _ = load_problem_module(msg["problem_path"], msg["scale"])
    state["problem"] = problem
    torch.set_grad_enabled(False)        # torch's own lazy patches were made at start-up (main)
    state["before"] = integrity.snapshot(extra_modules=_HARNESS_MODULES)
    state["digest_guard"] = state["digest"].Guard(device)     # the dispatch state, before any candidate code
    state["settings_before"] = integrity.global_settings()
    state["threads_before"] = integrity.python_threads()      # the harness's own, before any candidate code
    state["fault_status"] = "compile_error"
    t0 = time.perf_counter()
    subject = msg["subject"]
    init_inputs = list(problem.get_init_inputs())
    if subject == "candidate":
        import importlib.util
        state["candidate_path"] = msg["candidate_path"]
        spec = importlib.util.spec_from_file_location("candidate", msg["candidate_path"])
        module = importlib.util.module_from_spec(spec)
        sys.modules["candidate"] = module
        spec.loader.exec_module(module)
        cls = getattr(module, "ModelNew", None)
        if cls is None:
            raise RuntimeError("the candidate module defines no ModelNew")
    else:
        cls = problem.Model
    torch.manual_seed(msg["seed"])
    model = cls(*init_inputs)
    loaded = False
    ref_sd = msg.get("state_dict") or {}
    if isinstance(model, torch.nn.Module):
        own = model.state_dict()
        if ref_sd and set(own) == set(ref_sd) and all(tuple(own[k].shape) == tuple(ref_sd[k].shape) for k in own):
            model.load_state_dict(ref_sd, strict=True)
            loaded = True
        model = model.to(device)
        model.eval()
    if subject == "compile":
        model = torch.compile(model, **msg.get("compile_options", {}))
    state["model"] = model
    state["timer"] = timers.get_timer(msg["timer"], device)
    state["fault_status"] = "runtime_error"
    # one call here so that lazy compilation is counted in compile time and stays out of the timed calls
    warm = inp.make_inputs(problem, msg["seed"] + 1, device)
    for _ in range(max(1, int(msg.get("warmup", 1)))):
        model(*warm)
    integrity.sync(device)
    return "ready", {
        "compile_seconds": time.perf_counter() - t0,
        "state_dict_loaded": loaded,
        "device_name": integrity.device_name(device),
        "applied_limits": state["applied"],
        "settings_before": state["settings_before"],
    }


def _fresh_inputs(state, seed, probe, reuse, *, torch, inp):
    """New values; with ``reuse``, written into the previous call's tensors, so that the addresses repeat while
    the values do not (a cache keyed on pointers then returns a stale answer)."""
    inputs = inp.make_inputs(state["problem"], seed, state["device"], probe)
    old = state.get("last_inputs")
    if reuse and old is not None and len(old) == len(inputs) and all(
            isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype
            for a, b in zip(old, inputs)):
        for a, b in zip(old, inputs):
            a.copy_(b)
        inputs = old
    state["last_inputs"] = inputs
    return inputs


def _run_checked(state, seed, probe, poison_bytes, poison_value, *, torch, inp, integrity, reuse=False):
    model, device = state["model"], state["device"]
    inputs = _fresh_inputs(state, seed, probe, reuse, torch=torch, inp=inp)
    inp.poison(device, poison_bytes, poison_value)
    out = model(*inputs)
    return _collect(state, out, inputs, torch=torch, inp=inp, integrity=integrity)


def _collect(state, out, inputs, *, torch, inp, integrity, at_return=None):
    """Snapshot the outputs as they are the moment forward returned (or take the snapshot made then), then look
    again after a full sync. A difference means work was still running after forward returned (a thread or a
    side stream)."""
    state.pop("digest_inputs", None)
    items, bad = inp.flatten_outputs(out)
    if bad:
        integrity.sync(state["device"])
        return "outputs", {"bad": bad}
    running: list[str] = []
    if at_return is None:
        if "candidate_path" in state:
            # a thread still running the candidate's own code once forward has returned is work left behind,
            # whether or not it has changed the output yet
            running = integrity.threads_in_code_from(state["candidate_path"], state.get("threads_before", []))
        at_return = [t.clone() for t in items]
    integrity.sync(state["device"])
    time.sleep(0.002)
    deferred = any(not integrity.same_bits(a, t) for a, t in zip(at_return, items))
    alias = None
    for i, t in enumerate(items):
        for j, x in enumerate(inputs):
            if isinstance(x, torch.Tensor) and integrity.overlaps(t, x):
                alias = f"output {i} shares memory with input {j}"
    # a large input goes back as a placeholder; the parent then asks for its digest under a key it sends only now
    digest = state.get("digest")
    if digest is None:      # a state made by hand (tests); the child's main puts in the module it bound at start-up
        from evaluators import digest
    state["digest_inputs"] = inputs
    return "outputs", {
        "outputs": at_return,
        "devices": [str(t.device) for t in items],
        "inputs_after": [digest.placeholder(x) if state.get("digest_inputs_on", True) and digest.digested(x) else x
                         for x in inputs],
        "deferred": deferred,
        "threads_running": running,
        "alias": alias,
    }


def _h_check(state, msg, *, torch, inp, timers, integrity):
    kind, reply = _run_checked(state, msg["seed"], msg.get("probe"), msg["poison_bytes"], msg["poison_value"],
                               torch=torch, inp=inp, integrity=integrity, reuse=bool(msg.get("reuse")))
    if not msg.get("stage") or kind != "outputs":
        return kind, reply
    # staged: the outputs (and inputs sent whole) copied to host memory now, while the parent holds the device,
    # and sent when it asks with "collect", after it has let the device go: the slow part, the pipe, then holds
    # no device slot
    staged = dict(reply)
    if "outputs" in reply:
        staged["outputs"] = [_to_stage(state, i, t, torch) for i, t in enumerate(reply["outputs"])]
    if "inputs_after" in reply:
        staged["inputs_after"] = [_to_host(x, torch) for x in reply["inputs_after"]]
    state["staged"] = (kind, staged)
    return "staged", None


def _to_host(x, torch):
    return x.detach().to("cpu") if isinstance(x, torch.Tensor) else x


def _to_stage(state, i, t, torch):
    """Output ``i`` copied to host memory for the pipe: on CUDA into a page-locked buffer kept for the next check
    of the same shape (faulted in and locked once, then filled at the bus's speed); elsewhere as ``_to_host``. The
    buffer is sent before the next check refills it: a check and its collect always come in turn."""
    if not isinstance(t, torch.Tensor) or t.device.type != "cuda":
        return _to_host(t, torch)
    pool = state.setdefault("stage_buffers", {})
    buf = pool.get(i)
    if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
        pool.pop(i, None)
        try:
            buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        except RuntimeError:
            return _to_host(t, torch)
        pool[i] = buf
    buf.copy_(t.detach())
    return buf


def _h_collect(state, msg, *, torch, inp, timers, integrity):
    staged = state.pop("staged", None)
    if staged is None:
        raise RuntimeError("collect was asked for with no staged check before it")
    kind, reply = staged
    return _sampled(kind, reply, msg.get("sample"))


def _h_ping(state, msg, *, torch, inp, timers, integrity):
    return "pong", None


def _h_prepare(state, msg, *, torch, inp, timers, integrity):
    state["timed_inputs"] = _fresh_inputs(state, msg["seed"], None, bool(msg.get("reuse")), torch=torch, inp=inp)
    inp.poison(state["device"], msg["poison_bytes"], msg["poison_value"])
    state["timed_out"] = None
    if msg.get("flush"):
        state["timer"].flush()
    integrity.sync(state["device"])
    return "prepared", None


def _h_go(state, msg, *, torch, inp, timers, integrity):
    model, inputs = state["model"], state["timed_inputs"]
    box = []
    ns = state["timer"](lambda: box.append(model(*inputs)), flush=False)
    state["timed_out"] = box[0]
    # the outputs as they are the moment the timer stopped; a fetch compares them with the outputs later. The
    # snapshot's own time is reported so that the parent's host-clock check does not count it against the call.
    t0 = timers.now_ns()
    items, bad = inp.flatten_outputs(box[0])
    state["timed_snapshot"] = None if bad else [t.clone() for t in items]
    return "timed", {"ns": int(ns), "host_ns": int(getattr(state["timer"], "last_host_ns", 0) or 0),
                     "post_ns": int(timers.now_ns() - t0)}


def _h_fetch(state, msg, *, torch, inp, timers, integrity):
    kind, reply = _collect(state, state["timed_out"], state["timed_inputs"], torch=torch, inp=inp,
                           integrity=integrity, at_return=state.get("timed_snapshot"))
    # the parent's elements of each output as it was when the timer stopped, and the shapes of the whole
    return _sampled(kind, reply, msg.get("sample"))


def _sampled(kind, reply, sample):
    """``reply`` with each output replaced by its elements at the parent's flat indices ``sample`` (None for an
    output sent whole), and the shapes of the whole outputs; unchanged without a sample."""
    if sample is None or kind != "outputs" or "outputs" not in reply:
        return kind, reply
    outs = reply["outputs"]
    shapes = [list(t.shape) for t in outs]
    if not isinstance(sample, list) or len(sample) != len(outs) or any(
            idx is not None and idx.numel() and int(idx.max()) >= t.numel() for t, idx in zip(outs, sample)):
        return kind, {**reply, "outputs": [], "shapes": shapes}     # the shapes then tell the parent what is wrong
    reply = {**reply, "shapes": shapes,
             "outputs": [t if idx is None or t.numel() == 0 else t.reshape(-1)[idx.to(t.device)]
                         for t, idx in zip(outs, sample)]}
    return kind, reply


def _h_digest(state, msg, *, torch, inp, timers, integrity):
    """The digests of the inputs the last checked call was given, under the key the parent sent after its reply."""
    inputs = state.pop("digest_inputs", None)
    if inputs is None:
        raise RuntimeError("a digest was asked for with no checked call before it")
    digest = state["digest"]
    broken = state["digest_guard"].broken()
    if broken:
        return "error", {"status": "tampering", "message": f"the inputs' digest was refused: {broken}"}
    return "digests", {"digests": digest.input_digests(inputs, int(msg["key"]))}


def _h_audit(state, msg, *, torch, inp, timers, integrity):
    after = integrity.snapshot(extra_modules=_HARNESS_MODULES)
    return "audit", {
        "replaced": integrity.diff(state["before"], after),
        "settings": integrity.global_settings(),
        # threads the candidate started and left running its own code: a worker that finishes a call's work after
        # forward returned may win the race with the snapshot at return, but not this census
        "threads_left": integrity.threads_in_code_from(state["candidate_path"], state.get("threads_before", []))
        if state.get("candidate_path") else [],
    }


def _h_profile(state, msg, *, torch, inp, timers, integrity):
    # served after the judged calls and the audit: the profiler is no part of what is judged
    from evaluators.profiling import child_profile
    return "profile", child_profile(state, msg, torch=torch, inp=inp)


_HANDLERS = {"ping": _h_ping, "init": _h_init, "check": _h_check, "prepare": _h_prepare, "go": _h_go, "fetch": _h_fetch,
             "collect": _h_collect, "digest": _h_digest, "audit": _h_audit, "profile": _h_profile}
_HARNESS_MODULES = ("evaluators.timers", "evaluators.wire", "evaluators.inputs", "evaluators.integrity",
                    "evaluators.digest", "evaluators.child", "__main__")


if __name__ == "__main__":
    main()
