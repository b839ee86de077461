"""Does a CUDA candidate start inside the sandbox, with and without Landlock write confinement?

PYTHONPATH=. python3 experiments/gpu/sandbox_cuda_check.py     (on a CUDA host; prints one line per variant)
"""
import time

from evaluators.pipeline import evaluate
from evaluators.policy import EvalRequest, VerifyPolicy

SOURCE = open("experiments/candidates/stacked_linears_merged.py").read()
for confine in (False, True):
    t0 = time.time()
    r = evaluate(EvalRequest("experiments/problems/level2/stacked_linears.py", SOURCE, device="cuda", mode="verify",
                             verify=VerifyPolicy(confine_writes=confine, timeout_s=50), cache_dir="/tmp/kswarm-c"))
    print(f"confine_writes={confine} status={r.status.value} confined={r.policy.get('filesystem_confined')} "
          f"netns={r.policy.get('network_isolated')} {time.time() - t0:.0f}s | {r.reason[:400]}", flush=True)
