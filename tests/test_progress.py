"""What `tune run` shows while trials run: plain periodic lines off a terminal, a live table on one."""
from __future__ import annotations

import io
from types import SimpleNamespace

from trainables.spec.load import parse_spec
from trainables.tune.progress import Progress

SPEC = parse_spec("name: p\nepochs: 10\nparameters: {lr: {loguniform: [1.0e-3, 1.0e-2]}}\n"
                  "search: {num_samples: 4, max_concurrent: 2}\n")


def _trial(tid: str, status: str = "RUNNING", **last):
    return SimpleNamespace(trial_id=tid, status=status, last_result=last, config={})


def _feed(progress: Progress) -> list:
    a, b = _trial("a"), _trial("b")
    progress.on_trial_result(0, [a, b], a, {"training_iteration": 1, "val_acc": 0.5, "epoch_seconds": 2.0})
    progress.on_trial_result(0, [a, b], b, {"training_iteration": 1, "val_acc": 0.7, "epoch_seconds": 2.5})
    progress.on_trial_result(0, [a, b], a, {"training_iteration": 2, "val_acc": 0.6, "epoch_seconds": 2.0})
    done = _trial("b", "TERMINATED", training_iteration=10, val_acc=0.9)
    progress.on_trial_result(0, [a, done], done, {"training_iteration": 10, "val_acc": 0.9})
    progress.on_trial_complete(0, [a, done], done)
    return [a, done]


def test_off_a_terminal_progress_is_plain_periodic_lines():
    out = io.StringIO()
    progress = Progress(SPEC, out, every=0.0)
    _feed(progress)
    progress.on_step_end(0, [])
    lines = out.getvalue().splitlines()
    assert any("trial b completed     val_acc=0.9000 after 10 epochs  (1/4 done)" in ln for ln in lines), lines
    last = lines[-1]
    assert "1 running, 1 completed, 0 stopped early, 0 errored of 4" in last
    assert "best val_acc=0.9000 (trial b)" in last and "left at most" in last and "a epoch 2/10 val_acc=0.6000" in last
    assert "\x1b[" not in out.getvalue()  # no escape codes in a log


def test_plain_lines_wait_for_their_interval():
    out = io.StringIO()
    progress = Progress(SPEC, out, every=3600.0)
    _feed(progress)
    assert "trial b completed" in out.getvalue()  # a finished trial's line does not wait
    assert [ln for ln in out.getvalue().splitlines() if "running" in ln] == []


def test_on_a_terminal_a_live_table_shows_each_running_trial():
    out = io.StringIO()
    progress = Progress(SPEC, out, every=0.0, live=True)
    _feed(progress)
    table = progress.table()
    assert [c.header for c in table.columns] == ["trial", "epoch", "val_acc", "s/epoch"]
    assert list(table.columns[1].cells) == ["2/10"] and list(table.columns[2].cells) == ["0.6000"]
    progress.close()
    text = out.getvalue()
    assert "trial b completed" in text  # printed above the live table: it stays in the scrollback
    assert "\x1b[" in text  # drawn as a terminal draws it


def test_eta_counts_the_epochs_left():
    progress = Progress(SPEC, io.StringIO(), every=3600.0)
    _feed(progress)
    progress.start -= 100  # 12 trial-epochs (a: 2, b: 10) in 100 s
    # a: 8 epochs left; 2 trials not started: 20; at 0.12 epochs/s
    assert abs(progress.eta() - 28 / 0.12) < 1
