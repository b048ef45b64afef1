"""The pure-PyTorch training core: learns, resumes exactly, stops on divergence."""
from __future__ import annotations

import math

import torch
from torch import nn

from trainables.core.data import DatasetConfig, load_splits
from trainables.core.engine import count_params, fit, run_trial
from trainables.core.trial import Training, build

DIGITS = DatasetConfig(name="digits", image_size=32)
SMALL = {"model": "cnn", "filters": [8, 16, 16, 32, 32], "lr": 3e-3, "batch_norm": True}


def _collect():
    rows = []
    return rows, lambda metrics, state: rows.append((metrics, state()))


def test_cnn_learns_digits():
    rows, report = _collect()
    run_trial(SMALL, dataset=DIGITS, epochs=3, report=report)
    metrics = [m for m, _ in rows]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert metrics[-1]["val_acc"] > 0.9
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds", "samples_per_second",
                "trainable_params", "total_params"):
        assert key in metrics[-1]


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run():
    straight, report = _collect()
    run_trial(SMALL, dataset=DIGITS, epochs=4, report=report)
    first, report = _collect()
    run_trial(SMALL, dataset=DIGITS, epochs=2, report=report)
    state = first[-1][1]
    resumed, report = _collect()
    run_trial(SMALL, dataset=DIGITS, epochs=4, report=report, start=state)
    assert [m["epoch"] for m, _ in resumed] == [3, 4]
    assert resumed[-1][0]["val_loss"] == straight[-1][0]["val_loss"]
    for k, v in straight[-1][1]["model"].items():
        assert torch.equal(v, resumed[-1][1]["model"][k]), k


def test_checkpoint_cadence_by_epochs_by_time_and_always_at_the_end():
    from trainables.core.checkpoint import Cadence

    assert [e for e in range(1, 8) if Cadence(3, epochs=7).due(e)] == [3, 6, 7]
    assert [e for e in range(1, 5) if Cadence(1, epochs=4).due(e)] == [1, 2, 3, 4]
    now = [0.0]
    timed = Cadence(None, epochs=10, seconds=30, clock=lambda: now[0])
    due = []
    for epoch in range(1, 11):
        now[0] += 12.0  # 12 s epochs: a checkpoint at the first epoch end 30 s after the last one
        due += [epoch] if timed.due(epoch) else []
    assert due == [3, 6, 9, 10]


def test_epochs_reported_again_after_a_restore_replace_the_first_ones():
    from trainables.results.trials import _as_restarted

    rows = [{"training_iteration": i, "v": i} for i in (1, 2, 3, 4)] + [
        {"training_iteration": 3, "v": 30}, {"training_iteration": 4, "v": 40}, {"training_iteration": 5, "v": 50}]
    assert [(r["training_iteration"], r["v"]) for r in _as_restarted(rows)] == [(1, 1), (2, 2), (3, 30), (4, 40),
                                                                                  (5, 50)]


def test_a_changed_config_retunes_the_restored_optimizer():
    first, report = _collect()
    run_trial({**SMALL, "lr_schedule": "none"}, dataset=DIGITS, epochs=1, report=report)
    later, report = _collect()
    run_trial({**SMALL, "lr": 1e-4}, dataset=DIGITS, epochs=2, report=report, start=first[-1][1])
    assert later[-1][0]["lr"] == 1e-4  # as PBT asked, not the checkpoint's 3e-3


class _NaN(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x.flatten(1)[:, :10] * self.w * float("nan")


def test_nan_loss_stops_the_trial_and_says_so():
    splits = load_splits(DIGITS)
    rows, report = _collect()
    fit(_NaN(), splits, Training(), epochs=5, report=report)
    assert len(rows) == 1 and rows[0][0]["diverged"] is True and math.isnan(rows[0][0]["train_loss"])


def test_schedules_and_optimizers():
    for opt in ("sgd", "adam", "adamw", "rmsprop"):
        for sched in ("none", "cosine", "step"):
            rows, report = _collect()
            cfg = {**SMALL, "optimizer": opt, "lr_schedule": sched, "lr": 0.01, "label_smoothing": 0.1}
            run_trial(cfg, dataset=DatasetConfig(name="digits", limit=100), epochs=3, report=report)
            lrs = [m["lr"] for m, _ in rows]
            assert lrs[0] == 0.01
            assert (lrs[-1] < 0.01) == (sched != "none"), (opt, sched, lrs)


def test_count_params_names_the_trainable_layers():
    model, _, _ = build(SMALL, DIGITS)
    model.classifier.requires_grad_(False)
    counts = count_params(model)
    assert counts["total_params"] - counts["trainable_params"] == sum(p.numel() for p in model.classifier.parameters())
    assert "classifier" not in counts["trainable_layers"] and "features.0" in counts["trainable_layers"]


def test_a_last_training_batch_of_one_example_does_not_fail_batch_norm():
    """33 training images in batches of 32: BatchNorm cannot normalise a batch of one in training, and every
    trial whose training split was one more than a multiple of batch_size failed at its first epoch's end."""
    cfg = {"model": "cnn", "batch_norm": True, "batch_size": 32, "lr": 0.01, "optimizer": "adam",
           "filters": [4, 4, 4, 4, 4], "dense_units": 8}
    model, splits, training = build(cfg, DatasetConfig(name="digits", limit=33), torch.device("cpu"))
    assert len(splits.train) == 33
    rows: list[dict] = []
    fit(model, splits, training, epochs=1, report=lambda m, state: rows.append(m))
    assert len(rows) == 1 and math.isfinite(rows[0]["train_loss"])
