"""Parameter-server throughput (issue 4):
1. merge of one streamed 1.7M-parameter partial, and one meta_step (Adam) over a meta-batch of 16;
2. pushes/s the server actor sustains from many simulated workers (Ray actors), for a small and
   a 1.7M-parameter partial;
3. aggregate env_steps/s of W real task workers (the real driver, smoke games, longer tasks) vs W
   times one worker.

    python -m benchmarks.server_throughput [--workers 1 2] [--simulated 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np
import ray
import torch

from leap_ray.config import Config, load_config
from leap_ray.distributed.ledger import PartialMessage
from leap_ray.distributed.server import ParameterServer
from leap_ray.learners.a2c.networks import make_encoder
from leap_ray.meta import PartialMetaGradient


def nature_shapes() -> dict[str, tuple[int, ...]]:
    encoder = make_encoder("nature", (4, 84, 84))
    return {name: tuple(p.shape) for name, p in encoder.named_parameters()}


def payload(shapes, version=0, final=True) -> dict:
    grads = {name: torch.randn(shape) * 1e-3 for name, shape in shapes.items()}
    return PartialMetaGradient(grads, 10, int(final), version).to_numpy()


def server_config(tmp: str) -> Config:
    overrides = [
        f"logging.logdir={tmp}",
        "logging.checkpoint_every=1000000",
        "meta.meta_steps=1000000",
    ]
    return load_config(None, overrides)


def in_process(shapes, repeats: int = 30) -> None:
    init = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    with tempfile.TemporaryDirectory() as tmp:
        server = ParameterServer(server_config(tmp), init, tmp)
        chunk = payload(shapes, final=False)
        for array in chunk["grads"].values():
            array.flags.writeable = False  # as Ray's object store hands them over
        merges = []
        for i in range(repeats):
            start = time.perf_counter()
            server.push(PartialMessage(0, 0, i, False, chunk))
            merges.append(time.perf_counter() - start)
        print(f"merge one 1.7M partial into a task's sum: {1e3 * statistics.median(merges):.2f} ms")
        task = 1
        for batch in (1, 16):
            applies = []
            for _ in range(repeats // 3):
                ids = list(range(task, task + batch))
                for task_id in ids:
                    version = server.meta_init.version
                    server.push(PartialMessage(task_id, 0, 0, True, payload(shapes, version)))
                task += batch
                start = time.perf_counter()
                server.apply(ids, {})
                applies.append(time.perf_counter() - start)
            print(
                f"meta_step over {batch} task(s) (sum + Adam + stats): "
                f"{1e3 * statistics.median(applies):.2f} ms"
            )


@ray.remote(num_cpus=0)
class SimulatedWorker:
    def __init__(self, server, shapes, index: int) -> None:
        self.server, self.index = server, index
        self.chunk = payload(shapes, final=False)

    def run(self, pushes: int, in_flight: int = 4) -> int:
        pending, task_id = [], 10_000 * (self.index + 1)
        for i in range(pushes):
            pending.append(
                self.server.push.remote(PartialMessage(task_id, 0, i, False, self.chunk))
            )
            if len(pending) >= in_flight:
                ready, pending = ray.wait(pending, num_returns=1)
        ray.get(pending)
        return pushes


def pushes_per_second(shapes, simulated: int, pushes: int) -> float:
    init = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    with tempfile.TemporaryDirectory() as tmp:
        server = ray.remote(num_cpus=0)(ParameterServer).remote(server_config(tmp), init, tmp)
        workers = [SimulatedWorker.remote(server, shapes, i) for i in range(simulated)]
        ray.get([w.run.remote(5) for w in workers])  # warm-up
        start = time.perf_counter()
        total = sum(ray.get([w.run.remote(pushes) for w in workers]))
        rate = total / (time.perf_counter() - start)
        for actor in [*workers, server]:
            ray.kill(actor)
    return rate


def aggregate_env_steps(workers: int, steps_per_task: int) -> float:
    from leap_ray.driver import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            "configs/smoke.yaml",
            [
                f"logging.logdir={tmp}",
                "logging.run_name=bench",
                f"resources.num_workers={workers}",
                f"meta.meta_batch_size={2 * workers}",
                "meta.meta_steps=1",
                "env.num_envs=16",
                f"a2c.steps_per_task={steps_per_task}",
                "meta.stream_every=50",
            ],
        )
        run_dir = train(cfg)
        rows = [json.loads(line) for line in open(run_dir / "tasks.jsonl")]
    span = max(r["finished_at"] for r in rows) - min(r["started_at"] for r in rows)
    return sum(r["env_steps"] for r in rows) / span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--simulated", type=int, default=8)
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--steps-per-task", type=int, default=20_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    shapes = nature_shapes()
    print(f"partial: {sum(int(np.prod(s)) for s in shapes.values()):,} parameters (Nature encoder)")
    in_process(shapes)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        small = {"w": (256,)}
        for name, sizes in (("1K-parameter", small), ("1.7M-parameter", shapes)):
            rate = pushes_per_second(sizes, args.simulated, args.pushes)
            print(f"{args.simulated} simulated workers, {name} partials: {rate:,.0f} pushes/s")
        single = None
        for workers in args.workers:
            rate = aggregate_env_steps(workers, args.steps_per_task)
            single = single or rate
            print(
                f"{workers} real worker(s): {rate:,.0f} env_steps/s aggregate "
                f"({rate / (workers * single):.0%} of {workers} x one worker)"
            )
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
