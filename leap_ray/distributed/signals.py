"""The stop contract of a long command: SIGINT or SIGTERM (Ctrl-C, `ray job stop`, an
autoscaler) raises `Stopped` in the main thread, the command keeps what is finished and ends
with exit status 128 + signal. The handlers are installed, not inherited: a command started in
the background by a script inherits SIGINT ignored, and Python's default SIGTERM ends the
process without a word."""

from __future__ import annotations

import signal
import threading


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """`with StopSignals() as stop:` turns SIGINT/SIGTERM into `Stopped` inside the block; the
    previous handlers come back at its end. Ray's blocking calls turn any exception a handler
    raises into a plain KeyboardInterrupt, so `stop.signum` keeps which signal it was. After
    the first signal both are ignored until the block ends: a second one must not cut the
    saving of what is finished. `ray.init` inside the block keeps these (launch.connect)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: list[int] = []
        self.previous: dict = {}

    @property
    def signum(self) -> int:
        return self.received[-1] if self.received else signal.SIGINT

    def _stop(self, signum: int, frame) -> None:
        self.received.append(signum)
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signum)

    def __enter__(self) -> StopSignals:
        # only the main thread may set handlers: elsewhere (a Ray Tune trial runs its function
        # in a thread of its actor) the process's owner handles signals, and this does nothing
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._stop) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
