"""User trainables (`trainable: tests.trainables_for_tests:NAME`) for tests of failure handling."""
from ray import tune


def fail_when_x_is_1(config):
    if config["x"] == 1:
        raise RuntimeError("this trial fails on purpose")
    for epoch in range(1, 3):
        tune.report({"val_acc": 0.5 + 0.1 * epoch, "epoch": epoch})


def always_fail(config):
    raise RuntimeError("every trial fails on purpose")


def reports_score(config):
    for epoch in range(1, 4):
        tune.report({"score": 0.1 * epoch, "epoch": epoch})


def reports_a_huge_integer(config):
    tune.report({"val_acc": 10**400, "epoch": 1})


class NotATrainable:  # a class that Ray Tune cannot run (no ray.tune.Trainable): refused by `tune validate`
    def __init__(self, config):
        self.config = config


def reports_nan(config):
    tune.report({"val_acc": float("nan"), "epoch": 1})


def reports_nested(config):
    """Ray Tune names a nested value outer/inner: `metric: val/acc`."""
    for epoch in range(1, 3):
        tune.report({"val": {"acc": 0.1 * epoch * config["x"], "loss": 1.0 / epoch}, "epoch": epoch})
