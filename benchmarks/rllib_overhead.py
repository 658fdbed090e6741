"""The `rllib_ppo` learner on one Atari game (issue 16): RLlib PPO's env_steps/s with Leap off and
on (energy metric, with and without its loss term), measured side by side in one process in
interleaved windows, next to this project's A2C on the same game and frames; and what Leap's loss
term does to a PPO task's meta-gradient (its norm against the distance the encoder travelled,
which is exactly the meta-gradient without the loss term).

Each variant runs `--rounds` windows of `--iterations` PPO iterations, in turn, and reports its
best window; Leap's cost is also the median over rounds of the paired on/off windows.

    python -m benchmarks.rllib_overhead [--game Pong] [--rounds 4] [--iterations 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import ray

from leap_ray.config import load_config
from leap_ray.learners.a2c.learning import make_learner
from leap_ray.learners.base import ENCODER_PREFIX
from leap_ray.learners.rllib_ppo import PPOTask
from leap_ray.meta import make_meta_learner

SETTINGS = [  # configs/rllib_atari.yaml with a smaller batch, so that windows are short
    "env.num_envs=8",
    "rllib.training.train_batch_size_per_learner=1024",
    "rllib.training.minibatch_size=128",
    "rllib.training.num_epochs=2",  # 16 optimizer steps per iteration
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=2, help="PPO iterations per window")
    args = parser.parse_args()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    cfg = load_config("configs/rllib_atari.yaml", SETTINGS)
    window = args.iterations * cfg.rllib.training["train_batch_size_per_learner"]
    print(
        f"machine: {platform.machine()}, 1 torch thread, {args.game}, RLlib PPO "
        f"({', '.join(s.split('.')[-1] for s in SETTINGS)}), {args.rounds} rounds of "
        f"{window}-env_step windows"
    )
    variants = {"Leap off": None, "Leap on (energy)": False, "Leap on (energy + loss term)": True}
    tasks = {name: PPOTask(cfg, args.game, seed=0) for name in variants}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    ratios: dict[str, list[float]] = {name: [] for name in variants if variants[name] is not None}
    for task in tasks.values():
        task.train(window // 2)  # warm-up
    for _ in range(args.rounds):
        for name, loss_term in variants.items():
            task = tasks[name]
            leap = None
            if loss_term is not None:
                leap = make_meta_learner(
                    "leap", task.encoder(), metric="energy", loss_term=loss_term,
                    prefix=ENCODER_PREFIX,
                )  # fmt: skip
            partials = []
            summary = task.train(window, leap, stream_every=0, on_partial=partials.append)
            rates[name].append(summary.env_steps / summary.seconds)
            if leap is not None:
                ratios[name].append(partials[-1].norm() / summary.path["path/distance_from_init"])
    for task in tasks.values():
        task.close()

    a2c_cfg = load_config(
        "configs/local.yaml",
        ["env.num_envs=8", "env.grayscale=true", "env.frame_stack=4", "a2c.encoder=mnih2013"],
    )
    learner = make_learner(a2c_cfg, args.game, seed=0)
    learner.train(window // 4)
    a2c = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        steps = learner.train(window).env_steps
        a2c.append(steps / (time.perf_counter() - start))
    learner.envs.close()

    for name, values in rates.items():
        print(f"RLlib PPO, {name:<30} {max(values):8.0f} env_steps/s (best window)")
    print(f"ours, A2C (Mnih 2013, 8 envs x 5)      {max(a2c):8.0f} env_steps/s (best window)")
    off = rates["Leap off"]
    for name in ratios:
        paired = statistics.median(1 - on / base for on, base in zip(rates[name], off, strict=True))
        print(
            f"{name}: cost {100 * (1 - max(rates[name]) / max(off)):.1f}% (best windows), "
            f"{100 * paired:.1f}% (median of paired windows); meta-gradient norm / distance "
            f"travelled: median {statistics.median(ratios[name]):.2f} "
            f"(range {min(ratios[name]):.2f}-{max(ratios[name]):.2f})"
        )


if __name__ == "__main__":
    main()
