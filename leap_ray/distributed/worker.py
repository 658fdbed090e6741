"""TaskWorker: runs one learning process at a time (the configured learner, `leap_ray.learners`)
from the initialization it is handed, and streams the task's partial meta-gradients to the
parameter server and its TensorBoard rows to the telemetry sink; for evaluation, a transfer run
with neither. Plain class; `distributed.launch.make_worker` makes it a Ray actor. Reused across
tasks."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

import ray

from leap_ray.config import Config
from leap_ray.distributed.ledger import PartialMessage
from leap_ray.errors import LeapRayError
from leap_ray.learners import learner_for
from leap_ray.tasks import TaskSpec
from leap_ray.video import MAX_EPISODE_STEPS, gif_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskReport:
    task_id: int
    attempt: int
    game: str
    seed: int
    env_steps: int
    updates: int
    seconds: float
    episodes: tuple  # (env_step, return, length) per finished episode
    final_loss: float
    path: dict  # the task's path length, energy and distance (learners.base.PathTracker)
    terms: dict  # its meta-gradient's path and loss term norms and their cosine
    chunks: int
    rejected: str  # why the server rejected this attempt, or ""
    node_ip: str
    node_id: str
    pid: int
    started_at: float  # wall clock (time.time()) when the task began and ended
    finished_at: float


class TaskWorker:
    def __init__(self, cfg: Config, server, sink) -> None:
        self.cfg = cfg
        self.server = server
        self.sink = sink  # telemetry.TelemetrySink

    def ready(self) -> dict:
        """Where this worker runs (the driver uses it to know the actor has started)."""
        return {
            "node_ip": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }

    def run_task(self, spec: TaskSpec, init: dict) -> TaskReport:
        try:
            return self._run(spec, init)
        except ray.exceptions.RayActorError as error:  # the driver reports it, in one line
            log.warning(
                "task %d: the server or sink it talks to is gone (%s)",
                spec.task_id,
                error.__class__.__name__,
            )
            raise
        except LeapRayError as error:  # expected (a diverged learner): one line
            log.error("task %d (%s, attempt %d): %s", spec.task_id, spec.game, spec.attempt, error)
            raise
        except Exception:  # a bug or a broken machine: its traceback
            log.exception("task %d (%s, attempt %d) failed", spec.task_id, spec.game, spec.attempt)
            raise

    def run_eval(
        self, game: str, seed: int, steps: int, init: dict | None, method: str, video: bool = False
    ) -> dict:
        """Transfer evaluation: a fresh learner (new heads, no meta-learner) whose encoder starts
        from `init` (None: the seed's own random encoder); returns its episode curve, and with
        `video` one game played at the end as GIF bytes."""
        video_steps = MAX_EPISODE_STEPS if video else 0
        try:
            summary, _ = learner_for(self.cfg).run_transfer_task(
                self.cfg, game, seed, steps, init, None, video_steps
            )
        except LeapRayError as error:
            log.error("evaluation of %s on %s (seed %d): %s", method, game, seed, error)
            raise
        except Exception:
            log.exception("evaluation of %s on %s (seed %d) failed", method, game, seed)
            raise
        result = {
            "episodes": tuple(summary.episodes),
            "env_steps": summary.env_steps,
            "seconds": summary.seconds,
        }
        if summary.video is not None:
            result["video"] = gif_bytes(summary.video)
        return result

    def _run(self, spec: TaskSpec, init: dict) -> TaskReport:
        started_at = time.time()
        prefix = f"task/{spec.task_id:05d}-{spec.game}/"
        rows: list[tuple[str, int, float]] = []
        acks: list = []  # the server's answers to this task's chunks, in order
        sent: list = []  # the sink's receipts of its telemetry
        unread: list = []  # of both, those not yet seen to have arrived

        def read_arrived() -> None:
            """A dead server or sink answers with its error as soon as Ray knows: the task
            stops at its next chunk instead of training to its end for nothing."""
            done, unread[:] = ray.wait(unread, num_returns=len(unread), timeout=0)
            ray.get(done)

        def on_log(env_step: int, values: dict[str, float]) -> None:
            rows.extend((prefix + tag, env_step, value) for tag, value in values.items())

        def send_rows() -> None:
            if rows:
                sent.append(self.sink.write.remote(list(rows)))
                unread.append(sent[-1])
                rows.clear()

        def on_partial(partial) -> None:
            read_arrived()
            final = partial.num_tasks == 1
            message = PartialMessage(
                spec.task_id, spec.attempt, len(acks), final, partial.to_numpy()
            )
            acks.append(self.server.push.remote(message))
            unread.append(acks[-1])
            send_rows()

        summary = learner_for(self.cfg).run_meta_task(self.cfg, spec, init, on_partial, on_log)
        on_log(summary.env_steps, summary.terms)
        send_rows()
        ray.get(sent)  # the task's rows reach the sink before its report
        answers = ray.get(acks)  # every chunk is merged before the task reports done
        rejected = next((reason for ok, reason in answers if not ok), "")
        return TaskReport(
            spec.task_id,
            spec.attempt,
            spec.game,
            spec.seed,
            summary.env_steps,
            summary.updates,
            summary.seconds,
            tuple(summary.episodes),
            summary.final_loss,
            dict(summary.path),
            dict(summary.terms),
            len(acks),
            rejected,
            ray.util.get_node_ip_address(),
            ray.get_runtime_context().get_node_id(),
            os.getpid(),
            started_at,
            time.time(),
        )
