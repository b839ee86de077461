"""Getting a Ray to run on: a local one with this machine's hardware resources, or an existing cluster."""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping

import ray

from cluster import hardware
from cluster.tempdirs import check_temp_dir

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class RayHandle:
    """What ``ensure_ray`` did. ``shutdown`` undoes only that: it leaves alone a Ray someone else initialised."""

    address: str
    started_local: bool      # this call started a local Ray (its processes go away on shutdown)
    connected: bool          # this call connected the driver (to the local Ray or to a cluster)

    def shutdown(self) -> None:
        if self.connected and ray.is_initialized():
            ray.shutdown()
            self.connected = False


def ensure_ray(
    address: str | None = None,
    temp_dir: str | None = None,
    resources: Mapping[str, float] | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    include_dashboard: bool = False,
) -> RayHandle:
    """Connect this process to Ray.

    - Already connected: nothing is done, and the handle's ``shutdown`` does nothing.
    - ``address`` given (``"auto"``, ``"host:port"``, ``"ray://..."``): join that cluster; its nodes bring their own
      ``hw:`` resources, so ``resources``, ``num_cpus`` and ``num_gpus`` must be None.
    - No address: start a local Ray with ``resources`` (default: this machine's detected ``hw:`` resources) and
      as many GPUs as CUDA devices were detected, unless ``num_gpus`` says otherwise.

    No address always means a new local Ray, even where RAY_ADDRESS is set: a caller inside ``ray job submit``
    passes ``address="auto"`` (the CLI decides from its environment; this library does not read it).
    """
    if ray.is_initialized():
        ctx = ray.get_runtime_context()
        return RayHandle(address=ctx.gcs_address, started_local=False, connected=False)
    kwargs: dict[str, Any] = {"runtime_env": dict(runtime_env) if runtime_env else None,
                              "logging_level": logging.WARNING, "log_to_driver": True}
    if address is not None:
        if resources is not None or num_cpus is not None or num_gpus is not None:
            raise ValueError("resources, num_cpus and num_gpus come from the cluster's nodes when joining one")
        ray.init(address=address, **kwargs)
        started = False
    else:
        if resources is None or num_gpus is None:
            devices = hardware.detect_devices()
            resources = hardware.hardware_resources(devices) if resources is None else resources
            num_gpus = hardware.num_cuda(devices) if num_gpus is None else num_gpus
        if temp_dir is not None:
            temp_dir = check_temp_dir(temp_dir)
        # "local" starts a new Ray even where RAY_ADDRESS points elsewhere: no address means this machine.
        ray.init(address="local", resources=dict(resources), num_cpus=num_cpus, num_gpus=num_gpus, _temp_dir=temp_dir,
                 object_store_memory=object_store_memory, include_dashboard=include_dashboard, **kwargs)
        started = True
    ctx = ray.get_runtime_context()
    logger.info("%s Ray at %s; hardware: %s", "started local" if started else "joined", ctx.gcs_address,
                cluster_hardware())
    return RayHandle(address=ctx.gcs_address, started_local=started, connected=True)


def cluster_hardware() -> dict[str, int]:
    """Devices per hardware class in the whole cluster (alive nodes)."""
    out: dict[str, int] = {}
    for res, n in ray.cluster_resources().items():
        if res.startswith(hardware.RESOURCE_PREFIX):
            out[res[len(hardware.RESOURCE_PREFIX):]] = int(n)
    return out
