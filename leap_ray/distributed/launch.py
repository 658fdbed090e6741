"""Ray bootstrap and the one place roles are made remote: connect to a cluster or start a local
Ray, check that the cluster can host what a run asks for, and make the parameter server, the
telemetry sink and task workers from their plain classes."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from leap_ray.config import Config
from leap_ray.distributed.server import ParameterServer
from leap_ray.distributed.telemetry import TelemetrySink
from leap_ray.distributed.worker import TaskWorker
from leap_ray.errors import ConfigError


def connect(cfg: Config, address: str | None) -> bool:
    """Join `address` / RAY_ADDRESS, else start a local Ray. Returns whether we started it."""
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return False
    if address and address.startswith(("http://", "https://")):
        raise ConfigError(
            f"Ray address {address!r} is a dashboard URL (for `ray job`); the driver "
            "joins a cluster by 'auto' or HOST:PORT of its GCS"
        )
    if address:
        with _own_signal_handlers_kept():
            ray.init(address=address, log_to_driver=True)
        return False
    # Ray 2.60 serves its Prometheus metrics on every interface without authentication; a local
    # run does not collect them. Its gRPC servers listen on the node's address, which the CLI
    # makes 127.0.0.1 for a local Ray (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read when Ray is
    # imported: cli.main); they need the session's token either way: docs/faults.md, M.
    with _own_signal_handlers_kept():
        ray.init(
            include_dashboard=cfg.logging.dashboard,
            dashboard_host=cfg.logging.dashboard_host,
            _system_config={"enable_metrics_collection": False},
        )
    return True


@contextmanager
def _own_signal_handlers_kept():
    """`ray.init` puts its own SIGTERM handler (`sys.exit`, so nothing finished is saved) over
    whatever was there; a handler this process installed, a command's stop contract
    (distributed/signals.py), is put back, so no caller has to order `connect` and
    `StopSignals`. Python's defaults give way to Ray's, which shuts a local Ray down on exit."""
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if callable(handler) and handler is not signal.default_int_handler:
                signal.signal(sig, handler)


def disconnect() -> None:
    """Shut down the Ray that `connect` started."""
    ray.shutdown()


def check_resources(cfg: Config) -> None:
    """Fail fast on what the cluster can never provide, instead of a forever-pending actor."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    res = cfg.resources
    need = {
        "CPU": res.cpus_per_worker,
        **({"GPU": res.gpus_per_worker} if res.gpus_per_worker else {}),
    }
    if not any(all(n.get(k, 0) >= v for k, v in need.items()) for n in nodes):
        offers = [{k: n.get(k, 0) for k in ("CPU", "GPU")} for n in nodes]
        raise ConfigError(
            f"resources: no node can host a task worker needing {need}; nodes offer {offers}"
        )
    if res.server_resource and not any(n.get(res.server_resource, 0) > 0 for n in nodes):
        raise ConfigError(
            f"resources.server_resource: no node has the custom resource {res.server_resource!r}"
        )


def on_driver_node() -> dict:
    here = ray.get_runtime_context().get_node_id()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=False)}


def make_server(cfg: Config, init: dict, run_dir: Path, checkpoint: dict | None):
    """On the driver's node (checkpoints land where the driver reads them), or on the node with
    `resources.server_resource`."""
    if cfg.resources.server_resource:
        options = {"resources": {cfg.resources.server_resource: 0.001}}
    else:
        options = on_driver_node()
    actor = ray.remote(num_cpus=0, max_restarts=0)(ParameterServer)
    return actor.options(**options).remote(cfg, init, str(run_dir.resolve()), checkpoint)


def make_sink():
    """Telemetry's own path (telemetry.py): an actor next to the driver, which drains it."""
    return (
        ray.remote(num_cpus=0, max_restarts=0)(TelemetrySink).options(**on_driver_node()).remote()
    )


def make_worker(cfg: Config, server, sink):
    """A task worker; `server` and `sink` are None for evaluation (no meta-learner)."""
    res = cfg.resources
    actor = ray.remote(num_cpus=res.cpus_per_worker, num_gpus=res.gpus_per_worker, max_restarts=0)
    return actor(TaskWorker).remote(cfg, server, sink)
