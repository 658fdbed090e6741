"""What each (task id, attempt) has contributed, so nothing is counted twice or half-counted.

A task's partials arrive as numbered chunks; the last one says how many there are. A newer
attempt of a task (its worker died and the task was re-run) discards every chunk of the older
attempt; chunks of a superseded attempt, duplicate chunks and chunks after a task was applied are
ignored. A chunk with NaN/Inf or a norm above the bound rejects the whole attempt (a partial sum
of a path is not a meta-gradient). `take` hands the finished tasks to one meta-step.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from leap_ray.meta import PartialMetaGradient
from leap_ray.meta.partial import PartialSum

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartialMessage:
    """One streamed chunk of a task's meta-gradient (plain data; travels through Ray)."""

    task_id: int
    attempt: int
    chunk: int  # 0, 1, ... within this attempt
    final: bool  # the chunk that closes the task's path
    payload: dict  # PartialMetaGradient.to_numpy()


@dataclass
class TaskEntry:
    task_id: int
    attempt: int
    init_version: int = -1
    total: PartialSum | None = None  # the running sum of its chunks; dropped once applied
    chunks: set[int] = field(default_factory=set)
    num_chunks: int | None = None
    status: str = "running"  # running | finished | rejected | applied
    reason: str = ""
    meta_step: int | None = None  # the meta_step it was applied in
    num_segments: int = 0

    def record(self) -> dict:
        return {
            "attempt": self.attempt,
            "status": self.status,
            "reason": self.reason,
            "meta_step": self.meta_step,
            "num_segments": self.num_segments,
            "init_version": self.init_version,
        }


class Ledger:
    def __init__(self, max_partial_norm: float, max_task_norm: float = 0.0) -> None:
        self.max_partial_norm = max_partial_norm
        self.max_task_norm = max_task_norm  # 0: a task's meta-gradient is taken as it is
        self.entries: dict[int, TaskEntry] = {}
        self.rejected_chunks = 0

    def push(self, msg: PartialMessage) -> tuple[bool, str]:
        """Merge one chunk; returns (accepted, reason)."""
        entry = self.entries.get(msg.task_id)
        if entry is not None and entry.status == "applied":
            return False, f"task {msg.task_id} was already applied in meta_step {entry.meta_step}"
        if entry is not None and msg.attempt < entry.attempt:
            return False, f"attempt {msg.attempt} of task {msg.task_id} is superseded"
        if entry is None or msg.attempt > entry.attempt:
            entry = self.entries[msg.task_id] = TaskEntry(msg.task_id, msg.attempt)
        if entry.status == "rejected":
            return False, f"attempt {msg.attempt} of task {msg.task_id} was rejected"
        if msg.chunk in entry.chunks:
            return True, "duplicate chunk ignored"
        partial = PartialMetaGradient.from_numpy(msg.payload, copy=False)  # read-only view
        problem = self._problem(partial)
        if problem:
            self.rejected_chunks += 1
            entry.status, entry.reason, entry.total = "rejected", problem, None
            log.warning("rejected task %d attempt %d: %s", msg.task_id, msg.attempt, problem)
            return False, problem
        self._accumulate(entry, partial)
        entry.chunks.add(msg.chunk)
        if msg.final:
            entry.num_chunks = msg.chunk + 1
        if entry.num_chunks is not None and len(entry.chunks) == entry.num_chunks:
            entry.status = "finished"
        return True, "merged"

    @staticmethod
    def _accumulate(entry: TaskEntry, partial: PartialMetaGradient) -> None:
        entry.total = entry.total or PartialSum()
        try:
            entry.total.add(partial)
        except ValueError as error:
            raise ValueError(
                f"task {entry.task_id}: chunks of one attempt disagree: {error}"
            ) from None
        entry.init_version, entry.num_segments = entry.total.init_version, entry.total.num_segments

    def _problem(self, partial: PartialMetaGradient) -> str:
        norm = partial.norm()
        if not math.isfinite(norm) and not partial.is_finite():
            return "partial meta-gradient holds NaN or Inf"
        if not norm <= self.max_partial_norm:
            return f"partial meta-gradient norm {norm:.3g} exceeds meta.max_partial_norm"
        return ""

    def fail(self, task_id: int, attempt: int, reason: str) -> None:
        """The attempt ended without a path (its learner diverged): rejected, counted done."""
        entry = self.entries.get(task_id)
        if entry is None or attempt > entry.attempt:
            entry = self.entries[task_id] = TaskEntry(task_id, attempt)
        if entry.attempt == attempt and entry.status != "applied":
            entry.status, entry.reason, entry.total = "rejected", reason, None

    def done(self, task_id: int) -> bool:
        entry = self.entries.get(task_id)
        return entry is not None and entry.status in ("finished", "rejected")

    def take(
        self, task_ids: list[int], version: int, meta_step: int, max_staleness: int
    ) -> tuple[PartialMetaGradient | None, dict[str, float]]:
        """Sum the finished tasks' partials for one meta_step at `version`; tasks computed from
        an initialization more than `max_staleness` versions old are rejected instead, fresher
        ones (async mode) are applied at `version` as they are."""
        missing = [t for t in task_ids if not self.done(t)]
        if missing:
            raise ValueError(f"tasks {missing[:5]} have not finished")
        batch, staleness, bounded = PartialSum(), [], 0
        for task_id in task_ids:
            entry = self.entries[task_id]
            lag = version - entry.init_version
            if entry.status == "finished" and lag > max_staleness:
                entry.status, entry.reason = "rejected", f"stale by {lag} versions"
            if entry.status == "finished":
                entry.total.init_version = version  # applied at this version (async: as it is)
                if self.max_task_norm > 0:
                    bounded += entry.total.bound_norm_(self.max_task_norm) > self.max_task_norm
                batch.absorb(entry.total)
                staleness.append(lag)
                entry.status = "applied"
            entry.meta_step, entry.total = meta_step, None
        stats = {
            "meta/tasks_applied": float(len(staleness)),
            "meta/tasks_rejected": float(len(task_ids) - len(staleness)),
            "meta/staleness": sum(staleness) / len(staleness) if staleness else 0.0,
            "meta/tasks_norm_bounded": float(bounded),
        }
        return (batch.result() if staleness else None), stats

    def records(self) -> dict[int, dict]:
        return {task_id: entry.record() for task_id, entry in self.entries.items()}

    def load_records(self, records: dict[int, dict]) -> None:
        """Restore a checkpoint's ledger: the tasks a meta_step took (applied or rejected); any
        other task will be re-run and must not find itself already rejected."""
        self.entries = {}
        for task_id, rec in records.items():
            if rec["status"] in ("applied", "rejected") and rec["meta_step"] is not None:
                entry = TaskEntry(int(task_id), rec["attempt"], rec["init_version"])
                entry.status, entry.reason = rec["status"], rec["reason"]
                entry.meta_step, entry.num_segments = rec["meta_step"], rec["num_segments"]
                self.entries[int(task_id)] = entry
