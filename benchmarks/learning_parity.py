"""Does our A2C learner learn Atari as well as a peer? Ours and stable-baselines3's A2C side by
side at matched settings (issue 13), and the paper's learner configuration against random play.

Matched settings (SB3's A2C Atari recipe, rl-baselines3-zoo; ours: configs/atari_sb3.yaml):
    frames   84x84 grayscale, 4 stacked, frame skip 4 with max-pooling, up to 30 no-op starts,
             FIRE at reset, a lost life is a learning terminal, no sticky actions,
             rewards clipped to +-1 (SB3: sign(r); the same for Atari's integer rewards)
    network  Nature CNN, orthogonal init (both)
    learner  16 envs x 5 steps, RMSProp lr 7e-4 eps 1e-5 alpha 0.99 (torch's form, both),
             gradient-norm clip 0.5, entropy 0.01, discount 0.99, value 0.25 in SB3's
             mse units (ours: value_cost 0.5 on 0.5 * mse), n-step returns (GAE lambda 1)
One known difference: SB3 presses FIRE again after each lost life (its FireResetEnv sits above
EpisodicLifeEnv); ALE presses it only at a game's start, so our agent must learn to serve.
Ours runs with Leap accumulating its meta-gradient, as in meta-training.

Each run is its own process writing `<out>/<name>.csv` (env_step, return, length per finished
game) and a `.json` marker when done; finished runs are skipped, so a cut-short call resumes.

    pip install stable-baselines3==2.9.2   # for this benchmark only; not in requirements.txt
    python -m benchmarks.learning_parity run [--steps 400000] [--seeds 0 1] [--jobs 2]
    python -m benchmarks.learning_parity config [--config configs/atari27.yaml --name paper]
    python -m benchmarks.learning_parity report
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path("benchmarks/results/learning_parity")
GAMES = ("Breakout", "MsPacman")
BIN = 50_000
MATCHED_CONFIG = "configs/atari_sb3.yaml"  # ours at SB3's settings


# -- one run, in its own process -------------------------------------------------------------------
def run_ours(game: str, seed: int, steps: int, csv_path: Path, config: str | None) -> dict:
    from leap_ray.config import load_config
    from leap_ray.learners.a2c.learning import make_learner

    cfg = load_config(config or MATCHED_CONFIG)
    learner = make_learner(cfg, game, seed)
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env_step", "return", "length"])

        def on_log(env_step: int, values: dict[str, float]) -> None:
            if "charts/episode_return" in values:
                writer.writerow(
                    [env_step, values["charts/episode_return"], values["charts/episode_length"]]
                )
                handle.flush()

        summary = learner.train(steps, on_log=on_log, log_every=10**9)
    learner.envs.close()
    return {"env_steps": summary.env_steps, "seconds": summary.seconds}


def run_sb3(game: str, seed: int, steps: int, csv_path: Path) -> dict:
    import ale_py
    import gymnasium as gym
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    torch.set_num_threads(1)
    env = VecFrameStack(make_atari_env(f"{game}NoFrameskip-v4", n_envs=16, seed=seed), n_stack=4)
    model = A2C(
        "CnnPolicy",
        env,
        n_steps=5,
        learning_rate=7e-4,
        rms_prop_eps=1e-5,
        ent_coef=0.01,
        vf_coef=0.25,
        max_grad_norm=0.5,
        gamma=0.99,
        device="cpu",
        seed=seed,
    )
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env_step", "return", "length"])

        class Episodes(BaseCallback):
            def _on_step(self) -> bool:
                for info in self.locals["infos"]:
                    if "episode" in info:  # Monitor, below EpisodicLifeEnv: whole games
                        writer.writerow(
                            [self.num_timesteps, info["episode"]["r"], info["episode"]["l"]]
                        )
                handle.flush()
                return True

        start = time.perf_counter()
        model.learn(steps, callback=Episodes())
    return {"env_steps": model.num_timesteps, "seconds": time.perf_counter() - start}


def run_random(game: str, seed: int, steps: int, csv_path: Path) -> dict:
    """Uniform random actions through our environments (the paper's settings), same CSV."""
    from leap_ray.config import load_config
    from leap_ray.learners.a2c.envs import VectorTask

    cfg = load_config("configs/atari27.yaml")
    task = VectorTask(game, cfg.env, seed, groups=1)
    rng = np.random.default_rng(seed)
    task.reset()
    start, env_step = time.perf_counter(), 0
    group = task.groups[0]
    while env_step < steps:
        group.send(rng.integers(0, task.num_actions, task.num_envs))
        result = group.recv()
        env_step += task.num_envs
        task.episodes.record(task.rows[0], result.reward, result.game_over, env_step)
    task.close()
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env_step", "return", "length"])
        writer.writerows(task.episodes.drain())
    return {"env_steps": env_step, "seconds": time.perf_counter() - start}


def one(args: argparse.Namespace) -> None:
    csv_path = Path(args.csv)
    if args.impl == "ours":
        result = run_ours(args.game, args.seed, args.steps, csv_path, args.config)
    elif args.impl == "sb3":
        result = run_sb3(args.game, args.seed, args.steps, csv_path)
    else:
        result = run_random(args.game, args.seed, args.steps, csv_path)
    result |= {"impl": args.impl, "game": args.game, "seed": args.seed, "config": args.config}
    result["env_steps_per_second"] = round(result["env_steps"] / result["seconds"], 1)
    csv_path.with_suffix(".json").write_text(json.dumps(result, indent=1))


# -- orchestration ---------------------------------------------------------------------------------
def launch(jobs: list[tuple[str, list[str]]], parallel: int) -> None:
    """Run (name, argv) jobs, `parallel` at a time, each in its own process group; skip done."""
    OUT.mkdir(parents=True, exist_ok=True)
    pending = [(n, a) for n, a in jobs if not (OUT / f"{n}.json").exists()]
    print(f"{len(jobs) - len(pending)} of {len(jobs)} runs already done", flush=True)
    running: list[tuple[str, subprocess.Popen, float]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        while pending or running:
            while pending and len(running) < parallel:
                name, argv = pending.pop(0)
                log = (OUT / f"{name}.log").open("w")
                cmd = [sys.executable, "-m", "benchmarks.learning_parity", "one", *argv]
                cmd += ["--csv", str(OUT / f"{name}.csv")]
                proc = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
                running.append((name, proc, time.perf_counter()))
                print(f"started {name} (pid {proc.pid})", flush=True)
            time.sleep(5)
            for item in [r for r in running if r[1].poll() is not None]:
                name, proc, began = item
                running.remove(item)
                took = time.perf_counter() - began
                print(f"{name}: exit {proc.returncode} after {took:.0f} s", flush=True)
    finally:
        for _, proc, _ in running:  # only the processes this call started
            if proc.poll() is None:
                os.killpg(proc.pid, 15)


def run(args: argparse.Namespace) -> None:
    jobs = []
    for seed in args.seeds:
        for game in args.games:
            for impl in ("ours", "sb3"):
                argv = ["--impl", impl, "--game", game, "--seed", str(seed)]
                jobs.append((f"{impl}-{game}-{seed}", [*argv, "--steps", str(args.steps)]))
    launch(jobs, args.jobs)


def config(args: argparse.Namespace) -> None:
    jobs = [
        (
            f"{args.name}-{args.game}-{seed}",
            [
                "--impl",
                "ours",
                "--game",
                args.game,
                "--seed",
                str(seed),
                "--steps",
                str(args.steps),
                "--config",
                args.config,
            ],
        )
        for seed in args.seeds
    ]
    jobs.append(
        (
            f"random-{args.game}-0",
            ["--impl", "random", "--game", args.game, "--seed", "0", "--steps", "200000"],
        )
    )
    launch(jobs, args.jobs)


# -- report ----------------------------------------------------------------------------------------
def load_runs(prefix: str) -> dict[int, np.ndarray]:
    """seed -> [episodes, 2] (env_step, return) of the finished runs named prefix-<seed>."""
    runs = {}
    for marker in sorted(OUT.glob(f"{prefix}-*.json")):
        seed = int(marker.stem.rsplit("-", 1)[1])
        data = np.loadtxt(marker.with_suffix(".csv"), delimiter=",", skiprows=1, ndmin=2)
        runs[seed] = data[:, :2]
    return runs


def binned(episodes: np.ndarray, steps: int) -> list[float]:
    """Mean return of the games that ended in each BIN of env_steps (nan where none did)."""
    means = []
    for lo in range(0, steps, BIN):
        inside = episodes[(episodes[:, 0] > lo) & (episodes[:, 0] <= lo + BIN), 1]
        means.append(float(inside.mean()) if len(inside) else float("nan"))
    return means


def last_quarter(episodes: np.ndarray, steps: int) -> float:
    return float(episodes[episodes[:, 0] > 0.75 * steps, 1].mean())


def report(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [f"machine: {platform.machine()}, {os.cpu_count()} CPUs; bins of {BIN:,} env_steps"]
    configs = sorted(
        {p.stem.rsplit("-", 2)[0] for p in OUT.glob(f"*-{args.config_game}-*.json")}
        - {"ours", "sb3", "random"}
    )  # the learner configurations run with `config --name NAME`
    panels = [(g, ("ours", "sb3")) for g in args.games] + [(args.config_game, tuple(configs))]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4))
    for ax, (game, impls) in zip(np.atleast_1d(axes), panels, strict=True):
        colours = {impl: f"C{i}" for i, impl in enumerate(impls)}
        ranges = {}
        for impl in impls:
            runs = load_runs(f"{impl}-{game}")
            if not runs:
                continue
            steps = max(int(r[-1, 0]) for r in runs.values() if len(r))
            steps = BIN * round(steps / BIN)
            centres = np.arange(BIN // 2, steps, BIN)
            for seed, episodes in runs.items():
                means = binned(episodes, steps)
                shown = ", ".join(f"{m:.1f}" for m in means)
                lines.append(f"{game:<9} {impl:<5} seed {seed}: [{shown}]")
                ax.plot(
                    centres,
                    means,
                    marker="o",
                    ms=3,
                    label=f"{impl} seed {seed}",
                    color=colours[impl],
                    alpha=max(0.35, 1.0 - 0.2 * seed),
                )
            ranges[impl] = [last_quarter(e, steps) for e in runs.values()]
        random = load_runs(f"random-{game}")
        if "sb3" not in impls and random:
            level = float(np.mean(random[0][:, 1]))
            ax.axhline(level, color="grey", ls="--", label=f"random play {level:.1f}")
            lines.append(f"{game:<9} random play: mean {level:.2f} over {len(random[0])} games")
        for impl, values in ranges.items():
            lines.append(
                f"{game:<9} {impl:<5} last-quarter means: " + ", ".join(f"{v:.2f}" for v in values)
            )
        if {"ours", "sb3"} <= set(ranges):
            ours_mean = float(np.mean(ranges["ours"]))
            low = min(ranges["sb3"])
            verdict = "inside or above" if ours_mean >= low else "BELOW"
            lines.append(
                f"VERDICT {game}: ours {ours_mean:.2f} (mean of seeds) is {verdict} "
                f"SB3's seed range [{low:.2f}, {max(ranges['sb3']):.2f}]"
            )
        ax.set_title(game if "sb3" in impls else f"{game}: learner configurations")
        ax.set_xlabel("env_steps")
        ax.set_ylabel(f"mean game return per {BIN // 1000}k steps")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "learning_parity.png", dpi=110)
    text = "\n".join(lines)
    (OUT / "summary.txt").write_text(text + "\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="ours and SB3 at matched settings")
    p_run.add_argument("--games", nargs="+", default=list(GAMES))
    p_run.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p_run.add_argument("--steps", type=int, default=400_000)
    p_run.add_argument("--jobs", type=int, default=2, help="runs at a time (one per core)")
    p_config = sub.add_parser("config", help="a learner configuration vs random play")
    p_config.add_argument("--name", default="paper", help="runs are named NAME-GAME-SEED")
    p_config.add_argument("--config", default="configs/atari27.yaml")
    p_config.add_argument("--game", default="Breakout")
    p_config.add_argument("--seeds", nargs="+", type=int, default=[0])
    p_config.add_argument("--steps", type=int, default=1_000_000)
    p_config.add_argument("--jobs", type=int, default=2)
    p_report = sub.add_parser("report", help="bins, verdicts and the PNG from finished runs")
    p_report.add_argument("--games", nargs="+", default=list(GAMES))
    p_report.add_argument("--config-game", default="Breakout")
    p_one = sub.add_parser("one", help="one run (used by run and config)")
    p_one.add_argument("--impl", choices=("ours", "sb3", "random"), required=True)
    p_one.add_argument("--game", required=True)
    p_one.add_argument("--seed", type=int, required=True)
    p_one.add_argument("--steps", type=int, required=True)
    p_one.add_argument("--config", default=None)
    p_one.add_argument("--csv", required=True)
    args = parser.parse_args()
    {"run": run, "config": config, "report": report, "one": one}[args.command](args)


if __name__ == "__main__":
    main()
