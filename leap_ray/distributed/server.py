"""ParameterServer: owns the encoder initialization, its version, the meta-optimizer and the
ledger. Task workers stream partial meta-gradients to `push`; the driver calls `apply` with the
task ids of one meta_step (sync: the whole meta-batch; async: every `async_k` finished tasks) and
writes the statistics it returns (telemetry does not pass through the server: `telemetry.py`).
The driver's progress (task ids, env_steps, pending tasks) comes with `apply` so that it is
checkpointed with the meta-state it belongs to. Plain class; `distributed.launch.make_server`
makes it a Ray actor."""

from __future__ import annotations

import logging
import time

import ray
import torch

from leap_ray.checkpoint import META_TRAINING, checkpoint_state, init_digest, save_checkpoint
from leap_ray.config import Config
from leap_ray.distributed.ledger import Ledger, PartialMessage
from leap_ray.meta import MetaInitialization

log = logging.getLogger(__name__)


class ParameterServer:
    def __init__(self, cfg: Config, init: dict, run_dir: str, checkpoint: dict | None = None):
        self.cfg = cfg
        self.run_dir = run_dir
        self.meta_init = MetaInitialization(init, self.cfg.meta.optimizer, self.cfg.meta.lr)
        self.ledger = Ledger(self.cfg.meta.max_partial_norm, self.cfg.meta.max_task_norm)
        self.meta_step = 0
        self.progress: dict = {}  # the driver's, as of the last meta_step
        self.merge_seconds: list[float] = []
        self.rejected_updates = 0
        if checkpoint is not None:
            self.meta_init.load_state_dict(checkpoint["meta_init"])
            self.ledger.load_records(checkpoint["ledger"])
            self.meta_step = int(checkpoint["meta_step"])
            self.progress = dict(checkpoint["progress"])
            torch.set_rng_state(checkpoint["torch_rng"])
        self._init_ref = None

    def current(self) -> tuple[int, list]:
        """(version, [ref]): the newest initialization, put in the object store once per version
        (wrapped in a list so Ray hands the caller the reference, not the arrays)."""
        if self._init_ref is None:
            self._init_ref = ray.put(self.meta_init.arrays())
        return self.meta_init.version, [self._init_ref]

    def ping(self) -> bool:
        return True

    def state(self) -> dict:
        return {
            "meta_step": self.meta_step,
            "version": self.meta_init.version,
            "progress": dict(self.progress),
            "init_sha256": init_digest(self.meta_init.state_dict()["init"]),
        }

    def push(self, msg: PartialMessage) -> tuple[bool, str]:
        start = time.perf_counter()
        accepted, reason = self.ledger.push(msg)
        self.merge_seconds.append(time.perf_counter() - start)
        return accepted, reason

    def fail(self, task_id: int, attempt: int, reason: str) -> None:
        self.ledger.fail(task_id, attempt, reason)

    def apply(self, task_ids: list[int], progress: dict) -> dict[str, float]:
        """One meta_step over the given finished tasks; checkpoints when due."""
        start = time.perf_counter()
        max_staleness = self.cfg.meta.max_staleness if self.cfg.meta.mode == "async" else 0
        partial, stats = self.ledger.take(
            task_ids, self.meta_init.version, self.meta_step, max_staleness
        )
        if partial is not None:
            stats.update(self.meta_init.step(partial))
            self._init_ref = None
            if stats["meta/update_rejected"]:
                self.rejected_updates += 1
                log.warning(
                    "meta_step %d: the meta-update made the initialization non-finite; undone "
                    "(lower meta.lr)",
                    self.meta_step,
                )
        else:
            log.warning(
                "meta_step %d: no task was accepted; initialization unchanged", self.meta_step
            )
        self.meta_step += 1
        self.progress = dict(progress)
        merges = self.merge_seconds or [0.0]
        stats.update(
            {
                "meta/meta_step": float(self.meta_step),
                "meta/version": float(self.meta_init.version),
                "meta/tasks_done": float(
                    sum(e.status == "applied" for e in self.ledger.entries.values())
                ),
                "meta/merge_ms": 1e3 * sum(merges) / len(merges),
                "meta/rejected_partials": float(self.ledger.rejected_chunks),
                "meta/rejected_updates": float(self.rejected_updates),
                "meta/apply_ms": 1e3 * (time.perf_counter() - start),
            }
        )
        self.merge_seconds = []
        every = self.cfg.logging.checkpoint_every
        if self.meta_step % every == 0 or self.meta_step >= self.cfg.meta.meta_steps:
            self.save()
        return stats

    def save(self) -> str:
        state = checkpoint_state(
            META_TRAINING,
            self.meta_init.state_dict(),
            self.meta_step,
            self.ledger.records(),
            self.cfg.to_dict(),
            self.progress,
        )
        return str(save_checkpoint(self.run_dir, state, self.cfg.logging.keep_checkpoints))
