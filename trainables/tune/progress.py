"""What `tune run` shows while trials run: a live table on a terminal (rich), plain periodic lines
elsewhere (CI, `ray job submit` logs), and one line per finished trial that stays in the scrollback.

With ResNet-50 trials an epoch can take an hour: the live view says what each running trial is
doing (epoch k/N, its current metric, seconds per epoch), how many trials ended and how, the
best so far and an estimate of the time left, instead of nothing until a trial finishes.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from ray.tune import Callback

from trainables.core.numbers import finite
from trainables.errors import env_seconds
from trainables.results.read import trial_status
from trainables.results.trials import flat
from trainables.spec.schema import Spec

EVERY_ENV = "TRAINABLES_PROGRESS_SECONDS"  # seconds between plain progress lines (default 30)


@dataclass
class _Running:
    epoch: int = 0
    value: float | None = None
    seconds_per_epoch: float | None = None


@dataclass
class _State:
    """What the view shows, kept apart from how it is drawn (a unit test reads it)."""

    running: dict[str, _Running] = field(default_factory=dict)
    ended: dict[str, int] = field(default_factory=lambda: {"completed": 0, "stopped early": 0, "errored": 0})
    best: tuple[str, float] | None = None
    epochs_done: int = 0


class Progress(Callback):
    """A Tune callback on the driver. Only the spec's numbers are kept: Tune pickles its callbacks
    into tuner.pkl, and the spec may hold a tracking URI with a password."""

    def __init__(self, spec: Spec, stream=None, *, every: float | None = None, live: bool | None = None):
        self.metric, self.mode, self.epochs = spec.metric, spec.mode, spec.epochs
        self.ends_itself = spec.ends_itself  # a program or function reports as long as it runs: no epoch count
        self.num_samples = spec.num_samples
        self.stream, self.start = stream or sys.stdout, time.time()
        self.every = env_seconds(EVERY_ENV) if every is None else every
        self.live_wanted = live
        self.state, self.said, self._live, self._drawn = _State(), time.monotonic(), None, 0.0

    def __reduce__(self):
        # Pickled into tuner.pkl as an inert callback: on --resume run.py attaches this run's own.
        from trainables.tune.callbacks import _inert

        return (_inert, ())

    # -- Tune's events --

    def on_trial_result(self, iteration, trials, trial, result, **info):
        r = self.state.running.setdefault(trial.trial_id, _Running())
        epoch = int(result.get("training_iteration", r.epoch))
        self.state.epochs_done += max(0, epoch - r.epoch)
        r.epoch = epoch
        value = finite(flat(result).get(self.metric))  # a user's trainable may report 10**400, or text
        r.value = value if value is not None else r.value
        took = finite(result.get("epoch_seconds", result.get("time_this_iter_s")))
        r.seconds_per_epoch = took if took is not None else r.seconds_per_epoch
        if r.value is not None and (self.state.best is None or self._better(r.value, self.state.best[1])):
            self.state.best = (trial.trial_id, r.value)
        self._refresh()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial, trials, error=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, trials, error=True)

    def on_step_end(self, iteration, trials, **info):
        # Tune steps many times a second: redraw (the ETA, the elapsed time) at the live view's own pace.
        if time.monotonic() - self._drawn >= 0.5:
            self._refresh()

    def on_experiment_end(self, trials, **info):
        self.close()

    def lines(self) -> "_Lines":
        """A stream for other writers (the tracker's sender thread, the waiting line): each line
        goes above the live table instead of through it."""
        return _Lines(self)

    def close(self) -> None:
        """Take the live view down (also when the sweep ends by an exception or a signal)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    # -- what is shown --

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def _ended(self, trial, trials, *, error: bool) -> None:
        self.state.running.pop(trial.trial_id, None)
        status = "errored" if error else trial_status(trial, self.epochs, ends_itself=self.ends_itself)
        self.state.ended[status] = self.state.ended.get(status, 0) + 1
        r = trial.last_result or {}
        value = flat(r).get(self.metric)
        shown = f"{self.metric}={value:.4f}" if isinstance(value, (int, float)) else "no result"
        done = sum(self.state.ended.values())
        self._print(f"[{time.time() - self.start:6.0f}s] trial {trial.trial_id} {status:13s} {shown} after "
                    f"{r.get('training_iteration', 0)} epochs  ({done}/{self.num_samples} done)")
        self._refresh()

    def eta(self) -> float | None:
        """Seconds left at the pace so far, counting every trial not yet ended as running all its
        epochs (an upper bound when a scheduler stops trials early)."""
        elapsed = time.time() - self.start
        if not self.state.epochs_done or elapsed <= 0 or self.ends_itself:
            return None
        started = sum(self.state.ended.values()) + len(self.state.running)
        left = sum(self.epochs - r.epoch for r in self.state.running.values())
        left += max(0, self.num_samples - started) * self.epochs
        return left / (self.state.epochs_done / elapsed)

    def summary(self) -> str:
        s, eta = self.state, self.eta()
        best = f"best {self.metric}={s.best[1]:.4f} (trial {s.best[0]})" if s.best else f"no {self.metric} yet"
        return (f"{len(s.running)} running, {s.ended['completed']} completed, {s.ended['stopped early']} stopped "
                f"early, {s.ended['errored']} errored of {self.num_samples}; {best}"
                + (f"; about {_duration(eta)} left at most" if eta is not None else ""))

    def _of(self, epoch: int) -> str:
        return str(epoch) if self.ends_itself else f"{epoch}/{self.epochs}"

    def plain(self) -> str:
        """The periodic line where stdout is not a terminal."""
        trials = ", ".join(f"{t} epoch {self._of(r.epoch)}"
                           + (f" {self.metric}={r.value:.4f}" if r.value is not None else "")
                           for t, r in sorted(self.state.running.items()))
        return f"[{time.time() - self.start:6.0f}s] {self.summary()}" + (f" | {trials}" if trials else "")

    def table(self):
        """The live view: one row per running trial, and the summary under it."""
        from rich.table import Table

        table = Table(title=None, caption=self.summary(), expand=False, show_edge=False)
        for column in ("trial", "epoch", self.metric, "s/epoch"):
            table.add_column(column, justify="right" if column != "trial" else "left")
        for t, r in sorted(self.state.running.items()):
            table.add_row(t, self._of(r.epoch), f"{r.value:.4f}" if r.value is not None else "-",
                          f"{r.seconds_per_epoch:.1f}" if r.seconds_per_epoch is not None else "-")
        return table

    def _tty(self) -> bool:
        if self.live_wanted is not None:
            return self.live_wanted
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def _refresh(self) -> None:
        self._drawn = time.monotonic()
        if self._tty():
            if self._live is None:
                from rich.console import Console
                from rich.live import Live

                console = Console(file=self.stream, force_terminal=self.live_wanted or None)
                self._live = Live(self.table(), console=console, refresh_per_second=2, transient=True)
                self._live.start()
            self._live.update(self.table())
        elif time.monotonic() - self.said >= self.every and (self.state.running or self.state.epochs_done):
            self.said = time.monotonic()
            self._print(self.plain())

    def _print(self, line: str) -> None:
        if self._live is not None:
            self._live.console.print(line, highlight=False, soft_wrap=True)  # above the live table: stays
        else:
            print(line, file=self.stream, flush=True)


class _Lines:
    """A text stream whose complete lines Progress prints (see Progress.lines)."""

    def __init__(self, progress: Progress):
        self.progress, self.pending = progress, ""

    def write(self, text: str) -> int:
        self.pending += text
        *done, self.pending = self.pending.split("\n")
        for line in done:
            self.progress._print(line)
        return len(text)

    def flush(self) -> None:
        pass


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
