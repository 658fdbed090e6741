"""Soak (issue 15): does memory grow with the work done?

    python -m benchmarks.soak worker [--steps 1000000] [--config configs/local.yaml]
    python -m benchmarks.soak server [--partials 2000]

worker: one learner with its Leap meta-learner streaming partials (the task a worker runs), on
Pong, for --steps env_steps; its resident memory is sampled every 50k env_steps. After warm-up
(the first 20% of the samples) the largest sample must stay within 5% of the smallest.

server: a real ParameterServer actor fed --partials synthetic partials of the configured encoder's
shape (one final chunk per task, a meta_step every meta_batch_size tasks, checkpoints every 25
meta_steps into a temporary folder); the actor's resident memory is sampled every 100 partials
and must not grow with their number (same 5% rule).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import ray
import torch

from leap_ray.config import load_config
from leap_ray.distributed.ledger import PartialMessage
from leap_ray.distributed.server import ParameterServer
from leap_ray.learners import initial_encoder, learner_for
from leap_ray.meta import PartialMetaGradient
from leap_ray.suites import training_games
from leap_ray.tasks import TaskSpec

SAMPLE_EVERY = 50_000
WARM_UP = 0.2
TOLERANCE = 0.05


def rss_mib(pid: int | None = None) -> float:
    for line in open(f"/proc/{pid or 'self'}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def verdict(samples: list[tuple[int, float]], what: str) -> None:
    if len(samples) < 3:
        raise SystemExit(f"{what}: {len(samples)} samples; run longer for a verdict")
    steady = [rss for _, rss in samples[max(1, int(len(samples) * WARM_UP)) :]]
    growth = max(steady) / min(steady) - 1
    for x, rss in samples:
        print(f"  {what} {x:>9,}: {rss:8.1f} MiB")
    ok = growth <= TOLERANCE
    print(
        f"VERDICT {what}: after warm-up the resident memory spans {min(steady):.1f}-"
        f"{max(steady):.1f} MiB ({100 * growth:.1f}%): {'PASS' if ok else 'FAIL'} (<= 5%)"
    )


def soak_worker(config: str, steps: int) -> None:
    cfg = load_config(config, ["a2c.torch_threads=1"])
    init = initial_encoder(cfg, training_games(cfg.env))
    samples: list[tuple[int, float]] = [(0, rss_mib())]
    partials = [0]

    def on_log(env_step: int, values: dict) -> None:
        if env_step // SAMPLE_EVERY > samples[-1][0] // SAMPLE_EVERY:
            samples.append((env_step, rss_mib()))

    def on_partial(partial: PartialMetaGradient) -> None:
        partial.to_numpy()  # what a worker sends
        partials[0] += 1

    start = time.perf_counter()
    spec = TaskSpec(0, 0, "Pong", 0, steps, 0)
    summary = learner_for(cfg).run_meta_task(cfg, spec, init, on_partial, on_log)
    seconds = time.perf_counter() - start
    print(
        f"worker: {summary.env_steps:,} env_steps of Pong ({config}) in {seconds:.0f} s "
        f"({summary.env_steps / seconds:.0f}/s), {partials[0]} partials streamed"
    )
    verdict(samples, "env_step")


def soak_server(config: str, count: int) -> None:
    cfg = load_config(config, ["logging.checkpoint_every=25", "logging.keep_checkpoints=2"])
    init = initial_encoder(cfg, training_games(cfg.env))
    shapes = {name: value.shape for name, value in init.items()}
    size = sum(int(np.prod(s)) for s in shapes.values())
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            server = ray.remote(num_cpus=0)(ParameterServer).remote(cfg, init, run_dir)
            pid = ray.get(server.__ray_call__.remote(lambda self: os.getpid()))
            batch = cfg.meta.meta_batch_size
            samples = [(0, rss_mib(pid))]
            start = time.perf_counter()
            for task_id in range(count):
                version = task_id // batch
                grads = {n: torch.randn(s) * 1e-3 for n, s in shapes.items()}
                payload = PartialMetaGradient(grads, 10, 1, version).to_numpy()
                ok, reason = ray.get(
                    server.push.remote(PartialMessage(task_id, 0, 0, True, payload))
                )
                assert ok, reason
                if (task_id + 1) % batch == 0:
                    ids = list(range(task_id + 1 - batch, task_id + 1))
                    ray.get(server.apply.remote(ids, {"next_task_id": task_id + 1}))
                if (task_id + 1) % 100 == 0:
                    samples.append((task_id + 1, rss_mib(pid)))
            seconds = time.perf_counter() - start
        print(
            f"server: {count:,} partials of {size:,} parameters ({config} encoder), "
            f"{count // batch} meta_steps in {seconds:.0f} s"
        )
        verdict(samples, "partials")
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("worker", "server"))
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--partials", type=int, default=2000)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    if args.what == "worker":
        soak_worker(args.config, args.steps)
    else:
        soak_server(args.config, args.partials)


if __name__ == "__main__":
    main()
