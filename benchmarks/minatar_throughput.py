"""MinAtar: env_steps/s of one A2C learner against the emulator's own rate for the same game on
one core, measured in the same run (issue 23; target: the learner at half the emulator's rate
or better), and a `train` with 2 workers: how many learning processes of `a2c.steps_per_task`
fit an hour on this machine.

The emulator alone: one `minatar.Environment`, random actions, `state()` read every step as the
learner does, resets at episode ends. The learner: `configs/minatar.yaml`'s A2C (Leap on, the
PathTracker off) on one torch thread, after a warm-up; both in `--rounds` interleaved windows,
the best window reported.

    python -m benchmarks.minatar_throughput [--steps 40000] [--rounds 3] [--train] [--ceiling]

`--ceiling` says whether the target can be met at all on this core: the network arithmetic of
one env_step (torch's FlopCounterMode over one whole update: acting, loss, backward), the
rate the learner achieves at its measured speed, and what half the emulator's rate would need.
At that rate the emulator takes half of each second, so the network must run E x F FLOP/s
(E the emulator's steps/s, F the FLOPs per env_step), against the core's own single-thread
matrix-multiply rate, at the fc layer's shape and at a large square one.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import numpy as np
import torch

from leap_ray.config import load_config
from leap_ray.learners.a2c.learning import make_learner
from leap_ray.suites.minatar import GAMES

CONFIG = "configs/minatar.yaml"


def emulator_rate(game: str, steps: int) -> float:
    from minatar import Environment

    env = Environment(GAMES[game], sticky_action_prob=0.1)
    env.seed(0)
    env.reset()
    actions = np.random.default_rng(0).integers(6, size=steps)
    start = time.perf_counter()
    for action in actions:
        _, done = env.act(int(action))
        env.state()
        if done:
            env.reset()
    return steps / (time.perf_counter() - start)


def learner_rate(learner, steps: int) -> float:
    summary = learner.train(steps, measure_path=False)
    return summary.env_steps / summary.seconds


def flops_per_env_step(learner) -> float:
    """The FLOPs (multiply and add counted apart) that one update runs, per env_step."""
    from torch.utils.flop_counter import FlopCounterMode

    before = learner.env_steps
    with FlopCounterMode(display=False) as counter:
        learner.update(None, 0)
    return counter.get_total_flops() / (learner.env_steps - before)


def gemm_rate(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """Single-thread GFLOP/s of [m, k] @ [k, n], float32, the best of 5 timed windows."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    best = 0.0
    for _ in range(5):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            torch.mm(a, b)
            calls += 1
        best = max(best, 2 * m * k * n * calls / (time.perf_counter() - start) / 1e9)
    return best


def train_rate(meta_steps: int) -> tuple[float, int, float]:
    """A real `train` of configs/minatar.yaml (2 workers, local Ray): env_steps/s overall."""
    from leap_ray.driver import train

    with tempfile.TemporaryDirectory() as logdir:
        cfg = load_config(
            CONFIG,
            [
                f"meta.meta_steps={meta_steps}",
                "meta.meta_batch_size=4",
                "a2c.steps_per_task=50000",
                f"logging.logdir={logdir}",
                "logging.progress=false",
                "logging.dashboard=false",
                "logging.init_health=false",
            ],
        )
        start = time.perf_counter()
        train(cfg)
        seconds = time.perf_counter() - start
    tasks = meta_steps * cfg.meta.meta_batch_size
    return tasks * cfg.a2c.steps_per_task / seconds, tasks, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40_000, help="env_steps per window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train", action="store_true", help="also time a 2-worker train")
    parser.add_argument("--ceiling", action="store_true", help="also the arithmetic bound")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(CONFIG, ["logging.measure_paths=false"])
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, 1 torch thread; "
        f"learner: {cfg.env.num_envs} envs x {cfg.a2c.unroll} steps, encoder {cfg.a2c.encoder}"
    )
    print("| game | emulator alone (steps/s) | learner (env_steps/s) | learner / emulator |")
    print("| --- | --- | --- | --- |")
    rates = {}
    for game in GAMES:
        learner = make_learner(cfg, game, seed=0)
        learner_rate(learner, args.steps // 4)  # warm-up
        emulator, ours = [], []
        for _ in range(args.rounds):
            emulator.append(emulator_rate(game, args.steps))
            ours.append(learner_rate(learner, args.steps))
        flops = flops_per_env_step(learner) if args.ceiling else 0.0
        learner.envs.close()
        best_emulator, best_ours = max(emulator), max(ours)
        rates[game] = best_emulator, best_ours, flops
        print(
            f"| {game} | {best_emulator:,.0f} | {best_ours:,.0f} | "
            f"{best_ours / best_emulator:.2f} |"
        )
    if args.ceiling:
        hidden = cfg.env.num_envs * cfg.a2c.unroll
        fc_shape = gemm_rate(hidden, 1024, 128)  # the loss's fc: [T * N, 1024] @ [1024, 128]
        square = gemm_rate(2048, 2048, 2048)
        print(
            f"\none core's float32 matrix multiply: {fc_shape:.1f} GFLOP/s at the fc layer's "
            f"shape ({hidden} x 1024 x 128), {square:.1f} at 2048 x 2048 x 2048"
        )
        print(
            "| game | network FLOPs per env_step | learner's network GFLOP/s | needed for "
            "half the emulator's rate (GFLOP/s) | needed / 2048-square rate |"
        )
        print("| --- | --- | --- | --- | --- |")
        for game, (emulator, ours, flops) in rates.items():
            print(
                f"| {game} | {flops / 1e6:.2f}M | {ours * flops / 1e9:.1f} | "
                f"{emulator * flops / 1e9:.0f} | {emulator * flops / 1e9 / square:.1f}x |"
            )
    if args.train:
        rate, tasks, seconds = train_rate(meta_steps=2)
        per_hour = 3600 * rate
        print(
            f"\ntrain, 2 workers: {tasks} tasks of 50,000 env_steps in {seconds:.0f} s (Ray start "
            f"included): {rate:,.0f} env_steps/s, {per_hour / 1e6:.0f}M env_steps an hour = "
            f"{per_hour / cfg.a2c.steps_per_task:.0f} learning processes of "
            f"{cfg.a2c.steps_per_task:,} env_steps"
        )


if __name__ == "__main__":
    main()
