"""Reading a run's TensorBoard event files as written, row by row (no deduplication)."""

from collections import Counter
from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader


def scalar_counts(run_dir: Path) -> Counter:
    """(tag, step) -> how many scalar events the run's event files hold for it."""
    counts: Counter = Counter()
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        for event in LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    counts[(value.tag, event.step)] += 1
    return counts
