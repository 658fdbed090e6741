"""The one logger: only the driver (or `train-task`) owns a TensorBoard writer. Tags follow
`charts/`, `losses/`, `meta/`, `perf/`, `path/`; each run also writes `meta.json`."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path

import yaml
from torch.utils.tensorboard import SummaryWriter

from leap_ray.config import Config
from leap_ray.runs import write_atomically
from leap_ray.tasks import late_return


def git_sha() -> str:
    """The commit of this code; in a Ray Job (no .git uploaded) pass LEAP_RAY_GIT_SHA."""
    if os.environ.get("LEAP_RAY_GIT_SHA"):
        return os.environ["LEAP_RAY_GIT_SHA"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class RunLogger:
    def __init__(self, run_dir: Path, cfg: Config, command: str) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.run_dir))
        self.writer.add_text("config", "```\n" + yaml.safe_dump(cfg.to_dict()) + "```")
        self.meta = {
            "command": command,
            "git_sha": git_sha(),
            "config": cfg.to_dict(),
            "start_time": time.time(),
            "end_time": None,
            "success": None,
        }
        self._write_meta()

    def scalars(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        for tag, value in values.items():
            self.writer.add_scalar(prefix + tag, value, step)

    def image(self, tag: str, summary, step: int) -> None:
        """A prepared image summary (an animated GIF: `video.gif_summary`) under `tag`."""
        summary.value[0].tag = tag
        self.writer.file_writer.add_summary(summary, step)

    def rows(self, rows) -> None:
        """(tag, step, value) rows, as the telemetry sink holds them."""
        for tag, step, value in rows:
            self.writer.add_scalar(tag, value, step)

    def tasks(self, reports) -> None:
        """One JSON line per finished task (where it ran, how long, its episode returns; the late
        return: `tasks.late_return`)."""
        if not reports:
            return
        with open(self.run_dir / "tasks.jsonl", "a") as f:
            for report in reports:
                row = dataclasses.asdict(report)
                row["episodes"] = len(report.episodes)
                row["late_return"] = late_return(report.episodes, report.env_steps)
                row["mean_return"] = (
                    sum(e[1] for e in report.episodes) / len(report.episodes)
                    if report.episodes
                    else None
                )
                f.write(json.dumps(row) + "\n")

    def settle_tasks(self, rerun) -> None:
        """On resume: rows of tasks that run again (`rerun(task_id)`), and any line a crash cut
        short, move to tasks.abandoned.jsonl, so that tasks.jsonl keeps one line per task
        outcome."""
        path = self.run_dir / "tasks.jsonl"
        if not path.exists():
            return
        keep, drop = [], []
        for line in path.read_text().splitlines():
            try:
                again = rerun(int(json.loads(line)["task_id"]))
            except (ValueError, KeyError, TypeError):
                again = True
            (drop if again else keep).append(line)
        if drop:
            with open(self.run_dir / "tasks.abandoned.jsonl", "a") as f:
                f.write("".join(line + "\n" for line in drop))
            write_atomically(path, "".join(line + "\n" for line in keep))

    def failed_tasks(self, failures) -> None:
        """One JSON line per task that failed for good, (TaskSpec, reason) pairs."""
        if not failures:
            return
        with open(self.run_dir / "tasks.jsonl", "a") as f:
            for spec, reason in failures:
                row = {**dataclasses.asdict(spec), "failed": reason}
                f.write(json.dumps(row) + "\n")

    def close(self, success: bool) -> None:
        self.writer.close()
        self.meta.update(end_time=time.time(), success=success)
        self._write_meta()

    def _write_meta(self) -> None:
        write_atomically(self.run_dir / "meta.json", json.dumps(self.meta, indent=2))
