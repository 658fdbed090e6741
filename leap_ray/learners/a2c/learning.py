"""Synchronous n-step advantage actor-critic (A2C; Mnih et al. 2016) on one task, with a Leap or
Reptile meta-learner reading the encoder's path at every update.

Per update: a `Rollout` of `unroll` env_steps in every environment (the environment groups step
in C++ threads while the policy runs on another group; the acting forwards keep the encoder
trunk's graphs), n-step returns bootstrapped from V(s_T), the dense layers and heads once over
the whole batch, one backward through them and the rollout's trunk graphs, then
`meta_learner.update` (after backward, before the optimizer step, as Leap requires) and RMSProp
(`A2CLearner`). Partials are taken every `stream_every` updates.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from leap_ray.config import A2CConfig, Config, EnvConfig
from leap_ray.errors import ConfigError, LearnerDiverged
from leap_ray.learners.a2c.envs import VectorTask
from leap_ray.learners.a2c.networks import ActorCritic, make_encoder
from leap_ray.learners.a2c.rmsprop import RMSProp
from leap_ray.learners.base import (
    ENCODER_PREFIX,
    LearnerSummary,
    PathTracker,
    configured_meta_learner,
    log_episodes,
)
from leap_ray.meta import PartialMetaGradient, PathMetaLearner
from leap_ray.suites import suite_for


def n_step_returns(
    rewards: torch.Tensor, dones: torch.Tensor, bootstrap: torch.Tensor, discount: float
) -> torch.Tensor:
    """rewards, dones [T, N]; bootstrap [N] = V(s_T) -> discounted returns [T, N]."""
    returns = torch.empty_like(rewards)
    running = bootstrap
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + discount * running * (1.0 - dones[t])
        returns[t] = running
    return returns


def a2c_losses(
    logits: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    returns: torch.Tensor,
    chosen_by_policy: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits [B, A], values/actions/returns [B] -> (policy loss, value loss, entropy);
    `chosen_by_policy` [B] (bool) keeps forced actions out of the policy and entropy terms."""
    log_probs = F.log_softmax(logits, dim=-1)
    advantages = returns - values
    chosen = log_probs.gather(1, actions.unsqueeze(1)).squeeze(1)
    entropies = -(log_probs.exp() * log_probs).sum(-1)
    value_loss = 0.5 * advantages.pow(2).mean()
    if chosen_by_policy is None:
        return -(chosen * advantages.detach()).mean(), value_loss, entropies.mean()
    weight = chosen_by_policy.float()
    count = weight.sum().clamp_min(1.0)
    policy_loss = -(chosen * advantages.detach() * weight).sum() / count
    return policy_loss, value_loss, (entropies * weight).sum() / count


class Rollout:
    """One update's experience: `unroll` env_steps of every environment, the environment groups
    stepping in C++ threads while the policy acts on another group. Acting keeps the encoder
    trunk's graphs (the parameters do not change until the update), so the loss needs no second
    pass through the convolutions; the dense layers and heads run here without a graph and again,
    once, over the whole batch in the learner's loss."""

    def __init__(
        self, cfg: A2CConfig, env_cfg: EnvConfig, envs: VectorTask, model: ActorCritic, autocast
    ) -> None:
        self.cfg, self.env_cfg, self.envs, self.model = cfg, env_cfg, envs, model
        self.device = next(model.parameters()).device
        self.autocast = autocast
        first = torch.from_numpy(envs.reset())
        steps, num_envs = cfg.unroll, envs.num_envs
        pin = self.device.type == "cuda"
        if first.dim() == 4:  # frames [N, C, H, W]: stored channels-last, as the convolutions
            n, c, h, w = first.shape  # read them, so acting converts them to float in one pass
            storage = torch.zeros((steps + 1, n, h, w, c), dtype=first.dtype, pin_memory=pin)
            self.obs = storage.permute(0, 1, 4, 2, 3)
        else:
            self.obs = torch.zeros((steps + 1, *first.shape), dtype=first.dtype, pin_memory=pin)
        self.obs[0].copy_(first)  # [T + 1, N, ...] observations, on the host
        self.actions = torch.zeros((steps, num_envs), dtype=torch.long)  # [T, N]
        # [T, N] clipped rewards, plus discount * V(final_obs) where the time limit cut an episode
        self.rewards = torch.zeros((steps, num_envs))
        self.dones = torch.zeros((steps, num_envs))  # [T, N] episode ended: no bootstrap through it
        self.bootstrap = torch.zeros(num_envs, device=self.device)  # [N] V(s_T)
        self.trunk_outs: list[torch.Tensor] = []  # per step and group, in [T, N] order
        # env.fire_after_life_loss: the FIRE action of a game that has one
        fire = env_cfg.fire_after_life_loss
        self.fire = suite_for(env_cfg).fire_action(env_cfg, envs.game) if fire else None
        self.must_fire = torch.zeros(num_envs, dtype=torch.bool)  # [N] a life was just lost
        self.forced = torch.zeros((steps, num_envs), dtype=torch.bool)  # [T, N] FIRE pressed
        self.env_steps = 0

    def collect(self) -> None:
        """Fill obs[1:], actions, rewards, dones, bootstrap and the trunk outputs."""
        groups = self.envs.groups
        self.trunk_outs = []
        for t in range(self.cfg.unroll):
            for g, rows in enumerate(self.envs.rows):
                if t > 0:
                    self._receive(g, t - 1)
                actions = self._act(self.obs[t, rows])
                if self.fire is not None:
                    forced = self.must_fire[rows]
                    actions[forced] = self.fire
                    self.forced[t, rows] = forced
                    self.must_fire[rows] = False
                self.actions[t, rows] = actions
                groups[g].send(actions.numpy())
        last = self.cfg.unroll
        for g, rows in enumerate(self.envs.rows):  # V(s_T) of a group while later ones emulate
            self._receive(g, last - 1)
            with torch.no_grad(), self.autocast():
                _, values = self.model(self.obs[last, rows].to(self.device, non_blocking=True))
            self.bootstrap[rows] = values
        self.env_steps += self.cfg.unroll * self.envs.num_envs

    def advance(self) -> None:
        """The last observation starts the next rollout."""
        self.obs[0].copy_(self.obs[-1])

    def _act(self, obs: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            trunk_out = self.model.encoder.trunk(obs.to(self.device, non_blocking=True))
            self.trunk_outs.append(trunk_out)
            with torch.no_grad():
                logits, _ = self.model.heads(trunk_out)
        with torch.no_grad():
            try:
                return torch.multinomial(F.softmax(logits, dim=-1), 1).squeeze(1).cpu()
            except RuntimeError:  # NaN/Inf probabilities: checked only then, at no cost before
                if bool(torch.isfinite(logits).all()):
                    raise
                raise LearnerDiverged(
                    f"the learner on {self.envs.game} diverged: its policy is not finite at "
                    f"env_step {self.env_steps}; lower a2c.lr (now {self.cfg.lr:g})"
                ) from None

    def _receive(self, g: int, t: int) -> None:
        rows = self.envs.rows[g]
        result = self.envs.groups[g].recv()
        self.obs[t + 1, rows].copy_(torch.from_numpy(result.obs))
        clip = self.env_cfg.reward_clip
        reward = torch.from_numpy(result.reward).clamp(-clip, clip)  # a copy: stats keep r
        if result.truncated.any():  # not a terminal: the return goes on as V(s) estimates it
            cut = np.flatnonzero(result.truncated)
            final = torch.from_numpy(result.final_obs[cut]).to(self.device)
            with torch.no_grad():
                _, final_values = self.model(final)
            reward[cut] += self.cfg.discount * final_values.float().cpu()
        self.rewards[t, rows] = reward
        ended = result.terminated | result.truncated
        self.dones[t, rows] = torch.from_numpy(ended.astype(np.float32))
        if self.fire is not None:  # a lost life, the game going on
            self.must_fire[rows] |= torch.from_numpy(result.terminated & ~result.game_over)
        step = self.env_steps + (t + 1) * self.envs.num_envs
        self.envs.episodes.record(rows, result.reward, result.game_over, step)


class A2CLearner:
    """The learner of one task: a `Rollout` per update, its loss, backward, the meta-learner
    (after backward, before the optimizer step, as Leap requires) and RMSProp."""

    def __init__(
        self,
        cfg: A2CConfig,
        env_cfg: EnvConfig,
        envs: VectorTask,
        model: ActorCritic,
        meta_learner: PathMetaLearner | None = None,
        meta_sees_clipped: bool = False,
    ) -> None:
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"a2c.device is {cfg.device!r} but this process sees no CUDA device")
        bfloat16 = cfg.precision == "bfloat16"
        if bfloat16 and cfg.device.startswith("cuda") and not torch.cuda.is_bf16_supported():
            raise ConfigError("a2c.precision is 'bfloat16' but this GPU does not support it")
        self.cfg, self.envs = cfg, envs
        self.device = torch.device(cfg.device)
        self.autocast = functools.partial(
            torch.autocast, self.device.type, dtype=torch.bfloat16, enabled=bfloat16
        )
        self.model = model.to(self.device)
        self.meta_learner = meta_learner
        # the meta-learner reads g_i after the gradient clipping (meta.loss_gradient: clipped)
        self.meta_sees_clipped = meta_sees_clipped
        self.opt = RMSProp(model.parameters(), lr=cfg.lr, alpha=cfg.rms_alpha, eps=cfg.rms_eps)
        self.rollout = Rollout(cfg, env_cfg, envs, self.model, self.autocast)
        self.updates = 0

    @property
    def env_steps(self) -> int:
        return self.rollout.env_steps

    # -- learning --------------------------------------------------------------------------------
    def loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        """The A2C loss of the collected rollout."""
        dev, batch = self.device, self.rollout
        returns = n_step_returns(
            batch.rewards.to(dev), batch.dones.to(dev), batch.bootstrap, self.cfg.discount
        )
        with self.autocast():  # the heads' outputs are float32 whatever the precision
            logits, values = self.model.heads(torch.cat(batch.trunk_outs))  # [T * N, A], [T * N]
        chosen_by_policy = None
        if batch.fire is not None and bool(batch.forced.any()):
            chosen_by_policy = (~batch.forced).to(dev).flatten()
        policy_loss, value_loss, entropy = a2c_losses(
            logits, values, batch.actions.to(dev).flatten(), returns.flatten(), chosen_by_policy
        )
        loss = policy_loss + self.cfg.value_cost * value_loss - self.cfg.entropy_cost * entropy
        stats = {
            "losses/policy": float(policy_loss.detach()),
            "losses/value": float(value_loss.detach()),
            "losses/entropy": float(entropy.detach()),
            "losses/total": float(loss.detach()),
        }
        return loss, stats

    def update(self, on_partial: Callable[[PartialMetaGradient], None] | None, stream_every: int):
        """One update: rollout, loss, backward, meta-learner, optimizer."""
        with self.autocast():  # one region per update: autocast casts each weight once
            self.rollout.collect()
            loss, stats = self.loss()
        loss.backward()
        self.updates += 1
        clip = self.cfg.max_grad_norm > 0
        if clip and self.meta_sees_clipped:  # meta.loss_gradient: clipped
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        if self.meta_learner is not None:
            self.meta_learner.update(loss, self.model)
            if on_partial is not None and stream_every and self.updates % stream_every == 0:
                on_partial(self.meta_learner.take_partial(self.model))
        if clip and not self.meta_sees_clipped:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda" and not all(  # CUDA cannot raise on NaN probabilities
            bool(torch.isfinite(p).all()) for p in self.model.parameters()
        ):  # later (a device assert ends the process), so the parameters are checked here
            raise LearnerDiverged(
                f"the learner on {self.envs.game} diverged: its parameters are not finite after "
                f"update {self.updates}; lower a2c.lr (now {self.cfg.lr:g})"
            )
        self.rollout.advance()
        return stats

    def train(
        self,
        num_env_steps: int,
        *,
        stream_every: int = 0,
        on_partial: Callable[[PartialMetaGradient], None] | None = None,
        on_log: Callable[[int, dict[str, float]], None] | None = None,
        log_every: int = 100,
        measure_path: bool = True,
    ) -> LearnerSummary:
        """Train for `num_env_steps`; closes the meta-learner's path and sends its last partial.
        `measure_path=False` skips the `PathTracker` diagnostic (`logging.measure_paths`)."""
        summary = LearnerSummary()
        per_update = self.cfg.unroll * self.envs.num_envs
        total_updates = max(1, math.ceil(num_env_steps / per_update))
        path = PathTracker(self.model) if measure_path else None
        start = last_log = time.perf_counter()
        steps_at_log = steps_at_start = self.env_steps
        updates_at_start = self.updates
        for _ in range(total_updates):
            stats = self.update(on_partial, stream_every)
            if path is not None:
                path.update(self.model, stats["losses/total"])
            episodes = self.envs.episodes.drain()
            summary.episodes += episodes
            if on_log is not None and (self.updates % log_every == 0 or episodes):
                now = time.perf_counter()
                if self.updates % log_every == 0:
                    stats["perf/env_steps_per_second"] = (self.env_steps - steps_at_log) / max(
                        now - last_log, 1e-9
                    )
                    if path is not None:
                        stats.update(path.measure())
                    last_log, steps_at_log = now, self.env_steps
                log_episodes(on_log, self.env_steps, episodes)
                on_log(self.env_steps, stats)
        summary.final_loss = self._close_path(on_partial)
        if self.meta_learner is not None:
            summary.terms = dict(self.meta_learner.terms)
        if path is not None:
            path.finish(summary.final_loss)
            summary.path = path.measure()
        summary.env_steps = self.env_steps - steps_at_start  # this call's, closing rollout included
        summary.updates = self.updates - updates_at_start
        summary.seconds = time.perf_counter() - start
        return summary

    @torch.no_grad()
    def record_episode(self, max_steps: int) -> np.ndarray:
        """One whole game of the first environment, played by the current policy from a fresh
        reset of its group (training is over): its frames [T, 84, 84, 3] uint8, the last frame
        of each observation, at most `max_steps` agent steps."""
        group, rows = self.envs.groups[0], self.envs.rows[0]
        suite, env_cfg = suite_for(self.rollout.env_cfg), self.rollout.env_cfg
        obs = torch.from_numpy(group.reset())
        fire = self.rollout.fire
        must_fire = torch.zeros(rows.stop - rows.start, dtype=torch.bool)
        frames = [suite.rgb_frame(env_cfg, obs[0].numpy())]
        for _ in range(max_steps):
            with self.autocast():
                logits, _ = self.model(obs.to(self.device))
            actions = torch.multinomial(F.softmax(logits.float(), dim=-1), 1).squeeze(1).cpu()
            if fire is not None:
                actions[must_fire] = fire
            group.send(actions.numpy())
            result = group.recv()
            obs = torch.from_numpy(result.obs)
            if result.game_over[0]:
                break
            frames.append(suite.rgb_frame(env_cfg, obs[0].numpy()))
            must_fire = torch.from_numpy(result.terminated & ~result.game_over)
        return np.stack(frames)

    def _close_path(self, on_partial) -> float:
        """theta_K's loss from one more rollout (no update), then the task's last partial."""
        if self.meta_learner is None:
            return float("nan")
        with torch.no_grad(), self.autocast():  # theta_K's loss only: no graph to keep
            self.rollout.collect()
            final_loss, _ = self.loss()
        self.envs.episodes.drain()
        partial = self.meta_learner.finish_task(self.model, final_loss)
        if on_partial is not None:
            on_partial(partial)
        self.rollout.advance()
        return float(final_loss)


def make_learner(cfg: Config, game: str, seed: int, *, meta: bool = True) -> A2CLearner:
    """A learner on `game` with a fresh model (heads sized to the game) and, if `meta`, a
    meta-learner over its encoder whose initialization is the model's own until `load`ed."""
    torch.manual_seed(seed)
    torch.set_num_threads(cfg.a2c.torch_threads)
    envs = VectorTask(game, cfg.env, seed)
    model = ActorCritic(make_encoder(cfg.a2c.encoder, envs.obs_shape), envs.num_actions)
    meta_learner = None
    clipped_first = cfg.meta.loss_gradient == "clipped"
    if meta:
        meta_learner = configured_meta_learner(
            cfg.meta,
            model.encoder,
            prefix=ENCODER_PREFIX,
            # `update` replaces .grad every update; only clipping after the meta-learner read
            # it would change it in place
            borrow_grads=cfg.a2c.max_grad_norm == 0 or clipped_first,
        )
    return A2CLearner(cfg.a2c, cfg.env, envs, model, meta_learner, clipped_first)
