"""Ctrl-C (SIGINT) and SIGTERM during `tune run`: the sweep stops gracefully, its state saved, and the
command ends with 130 or 143 instead of a traceback or a report claiming a finished sweep.

While Tune's loop runs, the first signal is handed to Tune as SIGUSR1, Tune's own "stop gracefully"
signal: trials stop, the experiment state is written once more, fit() returns. Before the loop (Ray
starting or connecting), after it, or on a second signal, `Interrupted` is raised at once.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Every signal a handler took while a `with Interrupts()` block is open: Interrupted is raised wherever
# the main thread is, and a library on the way (MLflow creating its tables, SQLAlchemy) may catch it and
# go on, or turn it into an error of its own. The signal is then still honoured at the next check.
_received: list[int] = []
_open = [0]  # Interrupts blocks open (the command's and the sweep's): the first one clears _received


def raise_pending() -> None:
    """Interrupted if a signal arrived, even one whose exception something swallowed."""
    if _received:
        raise Interrupted(_received[0])


class Interrupted(BaseException):
    """A signal ended the command. A BaseException, like KeyboardInterrupt: no `except Exception`
    on the way up (a failed final step is reported and swallowed) may swallow it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class Interrupts:
    """Catches SIGINT and SIGTERM for the life of a `with` block (on the main thread only)."""

    def __init__(self, stream=None):
        self.signum: int | None = None
        self.stream = stream
        self._tuning = False
        self.started = False  # whether the sweep's trials ever started (else nothing was saved)
        self.finishing = False  # whether the trials are over and the final steps (retrain, report) run
        self._old: dict[int, object] = {}
        self._env: str | None = None

    def __enter__(self) -> "Interrupts":
        # Tune would put its own SIGINT handler in place of ours for the length of fit().
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        if not _open[0]:
            _received.clear()
        _open[0] += 1
        self.install()
        return self

    def install(self) -> None:
        """(Re)install the handlers: ray.init replaces the SIGTERM handler with its own."""
        if threading.current_thread() is not threading.main_thread():
            return
        for s in SIGNALS:
            old = signal.signal(s, self._handle)
            if old is not self._handle:
                self._old.setdefault(s, old)

    def __exit__(self, *exc) -> None:
        _open[0] -= 1
        if self._env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env
        if threading.current_thread() is threading.main_thread():
            for s, old in self._old.items():
                signal.signal(s, old if old is not None else signal.SIG_DFL)

    @contextlib.contextmanager
    def tuning(self):
        """Around tuner.fit(): a first signal stops Tune gracefully instead of raising."""
        self._tuning = self.started = True
        try:
            yield
        finally:
            self._tuning = False

    def check(self) -> None:
        """Raise Interrupted if a signal arrived (before fit() and once it has returned)."""
        if self.signum is not None:
            raise Interrupted(self.signum)
        raise_pending()

    def _handle(self, signum: int, frame) -> None:
        _received.append(signum)
        first = self.signum is None
        self.signum = self.signum or signum
        # Tune installs its SIGUSR1 handler only once fit() has set up; before that SIGUSR1 would kill us.
        tune_listens = hasattr(signal, "SIGUSR1") and signal.getsignal(signal.SIGUSR1) not in (
            signal.SIG_DFL, signal.SIG_IGN, None)
        if first and self._tuning and tune_listens:
            print(f"\n{signal.Signals(signum).name}: stopping the trials and saving the sweep's state "
                  f"(send it again to stop at once)", file=self.stream or sys.stdout, flush=True)
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop
            return
        raise Interrupted(self.signum)
