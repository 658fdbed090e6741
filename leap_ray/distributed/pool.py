"""Task-worker actors kept busy with one call each (`ray.wait` over {ref: (worker, job)}): the
plumbing that meta-training (`driver.Dispatcher`) and evaluation share. A worker that dies (node
lost, OOM, SIGKILL) is killed for good and replaced, and its job comes back `lost`; a call that
raises comes back with its error and its worker is reused, also when that error says another
actor it called died (the caller asks which). Whether and how a job runs again is
the caller's decision. A worker that has not started gets no job, so a cluster smaller than the
pool still finishes; a pool none of whose workers starts within `start_timeout_s` is an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from leap_ray.errors import RunFailed

log = logging.getLogger(__name__)
WORKER_START_TIMEOUT_S = 300.0


@dataclass
class Outcome:
    job: Any
    result: Any = None
    error: RayTaskError | None = None  # the call raised
    lost: bool = False  # the worker died during the call


class WorkerPool:
    def __init__(
        self,
        start_worker: Callable[[], Any],
        size: int,
        *,
        needs: str,
        start_timeout_s: float = WORKER_START_TIMEOUT_S,
    ) -> None:
        """`start_worker()` makes an actor with a `ready()` method returning {"node_id": ...};
        `needs` says what a worker asks the cluster for, for the error when none can start."""
        self._start_worker, self._needs = start_worker, needs
        self._start_timeout_s = start_timeout_s
        self._starting: dict = {}  # ready() ref -> worker
        self._idle: list = []
        self._running: dict = {}  # call ref -> (worker, job)
        self.nodes: set[str] = set()  # where workers have started
        self._created_at = time.monotonic()
        for _ in range(size):
            self._start()

    def _start(self) -> None:
        worker = self._start_worker()
        self._starting[worker.ready.remote()] = worker

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def running(self) -> int:
        return len(self._running)

    def run(self, job: Any, call: Callable[[Any], ray.ObjectRef]) -> None:
        """Start `call(worker)` on an idle worker (check `idle` first)."""
        worker = self._idle.pop()
        self._running[call(worker)] = (worker, job)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """Outcomes of the calls that ended within `timeout` seconds (None: until something ends
        or a worker starts); workers that started since the last call become idle."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            refs = [*self._running, *self._starting]
            if not refs:
                return []
            wait_s = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            done, _ = ray.wait(refs, num_returns=1, timeout=wait_s)
            if done:
                done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                return [o for o in map(self._collect, done) if o is not None]
            self._check_started()
            if deadline is not None and time.monotonic() >= deadline:
                return []

    def _collect(self, ref) -> Outcome | None:
        if ref in self._starting:
            worker = self._starting.pop(ref)
            try:
                self.nodes.add(ray.get(ref)["node_id"])
                self._idle.append(worker)
            except RayActorError:
                log.warning("a task worker died while starting; starting another")
                self._start()
            return None
        worker, job = self._running.pop(ref)
        try:
            result = ray.get(ref)
        except RayTaskError as error:  # first: the task raised, though its error may be a
            self._idle.append(worker)  # RayActorError too (the server it talked to died)
            return Outcome(job, error=error)
        except RayActorError:
            ray.kill(worker, no_restart=True)
            self._start()
            return Outcome(job, lost=True)
        self._idle.append(worker)
        return Outcome(job, result)

    def _check_started(self) -> None:
        if self._idle or self._running or self.nodes:
            return
        if time.monotonic() - self._created_at > self._start_timeout_s:
            raise RunFailed(
                f"no task worker started within {self._start_timeout_s:.0f} s: the cluster "
                f"cannot place workers needing {self._needs}"
            )
