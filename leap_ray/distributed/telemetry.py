"""Telemetry's own path, apart from the meta-gradients: every role sends its TensorBoard rows
(tag, step, value) to one `TelemetrySink` actor on the driver's node, and the driver, the only
process with a TensorBoard writer, drains it into the run's event files. Workers on other nodes
share no disk with the head, so rows travel through Ray, never through files; each row is sent
once and written once (the parameter server sends none: the driver writes what `apply` returns).

A task worker batches its rows and sends them with each streamed partial and at the task's end,
waiting for that last send, so a finished task's rows are in the sink before its report.
Plain class; `distributed.launch.make_sink` makes it a Ray actor.
"""

from __future__ import annotations

Row = tuple[str, int, float]  # (tag, step, value)


class TelemetrySink:
    """Holds rows until the driver drains them (bounded: the driver drains every second)."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def write(self, rows: list[Row]) -> int:
        self.rows.extend(rows)
        return len(rows)

    def ping(self) -> bool:
        return True

    def drain(self) -> list[Row]:
        rows, self.rows = self.rows, []
        return rows
