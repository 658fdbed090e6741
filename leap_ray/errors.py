"""The project's own error types: expected failures, each printed as one line wherever it
happens (the CLI, a task worker's log). Anything else is a bug and keeps its traceback."""

from __future__ import annotations


class LeapRayError(Exception):
    """Base of every expected, user-facing failure."""


class ConfigError(LeapRayError, ValueError):
    """Bad input: a config field, a CLI argument, a game name; the message names it."""


class CheckpointError(LeapRayError, ValueError):
    """A one-line reason a checkpoint cannot be used or written."""


class LearnerDiverged(LeapRayError, RuntimeError):
    """The parameters went non-finite. Deterministic for a seed: re-running it cannot help."""


class RunFailed(LeapRayError, RuntimeError):
    """A run cannot go on (its tasks keep failing, a role died); the message says what to do."""
