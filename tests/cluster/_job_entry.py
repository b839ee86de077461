"""Entry point of the ``ray job submit`` test: join the cluster the job runs in and evaluate on its cpu device."""
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cluster.dispatch import Dispatcher  # noqa: E402
from cluster.runtime import cluster_hardware, ensure_ray  # noqa: E402
from tests.cluster._evals import drain, request  # noqa: E402

logging.basicConfig(level=logging.INFO)
handle = ensure_ray(address="auto")
d = Dispatcher(["cpu"], "tests.cluster._evals:scripted")
for i in range(3):
    d.submit(f"k{i}", request(f"sleep 0.1\n# {i}"), "cpu")
got = drain(d)
d.shutdown()
print("RESULT " + json.dumps({"hardware": cluster_hardware(), "keys": sorted(k for k, _, _ in got),
                              "statuses": sorted({r.status.value for _, _, r in got})}))
handle.shutdown()
