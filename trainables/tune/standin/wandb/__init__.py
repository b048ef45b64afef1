"""A stand-in for `wandb` inside a trainables trial (first on the program's import path): init, config,
log and finish report to the trial; every other call is a harmless no-op, named once on stderr.

Only the standard library: it runs in the user's program, whatever that has installed.
"""
from __future__ import annotations

import atexit
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import types
from collections.abc import Mapping

from ._channel import numbers, send

__version__ = "0.0.0+trainables"
_SWEEP = os.environ.get("TRAINABLES_WANDB_CONFIG")  # the trial's hyperparameters, nested (JSON)
_warned: set[str] = set()


def _warn(name: str) -> None:
    if name not in _warned:
        _warned.add(name)
        print(f"trainables: wandb.{name} does nothing here (a stand-in for wandb reports to Ray Tune)",
              file=sys.stderr)


class _Noop:
    """What an unsupported call returns: callable, any attribute, a context manager, falsy."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Noop()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Noop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __bool__(self):
        return False

    def __iter__(self):
        return iter(())


def _load_sweep() -> dict:
    if not _SWEEP:
        return {}
    with open(_SWEEP) as f:
        return json.load(f)


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Config:
    """wandb.config: attribute and item access; the sweep's values win and stay (as W&B locks them)."""

    def __init__(self, values: dict | None = None, locked: set | None = None):
        object.__setattr__(self, "_values", dict(values or {}))
        object.__setattr__(self, "_locked", set(locked or ()))

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"wandb.config has no {name!r}") from None

    def __getitem__(self, key):
        return self._values[key]

    def __setattr__(self, name, value):
        self.update({name: value})

    def __setitem__(self, key, value):
        self.update({key: value})

    def __contains__(self, key):
        return key in self._values

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __repr__(self):
        return repr(self._values)

    def get(self, key, default=None):
        return self._values.get(key, default)

    def keys(self):
        return self._values.keys()

    def items(self):
        return self._values.items()

    def values(self):
        return self._values.values()

    def as_dict(self):
        return dict(self._values)

    def persist(self):
        pass  # nothing to save: the trial keeps its configuration

    def setdefaults(self, d):
        for k, v in dict(d).items():
            self._values.setdefault(k, v)

    def update(self, d=None, allow_val_change=None, **kwargs):
        d = vars(d) if hasattr(d, "__dict__") and not isinstance(d, dict) else dict(d or {})
        for k, v in {**d, **kwargs}.items():
            if k in self._locked:
                if not _same(v, self._values.get(k)):
                    print(f"trainables: wandb.config[{k!r}] is the sweep's value {self._values.get(k)!r}; "
                          f"{v!r} ignored", file=sys.stderr)
                continue
            self._values[k] = v


def _same(a, b) -> bool:
    """a == b, for values whose == is no bool (a numpy array, a tensor): then not the same."""
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - whatever their == raises
        return False


class Summary(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __setitem__(self, name, value):  # run.summary["loss"] = 0.3, W&B's usual way: sent as update() is
        super().__setitem__(name, value)
        send({"summary": numbers(self)})

    def update(self, d=None, **kwargs):  # noqa: D401 - dict.update, also sent to the trial
        super().update(dict(d or {}), **kwargs)
        send({"summary": numbers(self)})


class Run:
    def __init__(self, config: Config, *, name=None, project=None, group=None, tags=None, notes=None):
        self.config = config
        self.summary = Summary()
        self.id = os.environ.get("WANDB_RUN_ID", "trial")
        self.name = name or self.id
        self.project = project or os.environ.get("WANDB_PROJECT", "")
        self.entity = os.environ.get("WANDB_ENTITY", "")
        self.sweep_id = os.environ.get("WANDB_SWEEP_ID", "")
        self.group, self.tags, self.notes = group, tuple(tags or ()), notes
        # the run's own folder, as W&B's wandb/run-<id>/files (the trial's: concurrent trials' files apart)
        self.dir = os.path.join(os.environ["WANDB_DIR"], "wandb", f"run-{self.id}", "files") \
            if os.environ.get("WANDB_DIR") else os.getcwd()
        os.makedirs(self.dir, exist_ok=True)
        self.url = ""
        self.step = 0
        self._row: dict = {}
        self._finished = False
        self._pid = os.getpid()  # a forked child's copy of the run commits nothing at its exit
        self._lock = threading.RLock()  # threads of the script logging at once

    def log(self, data, step=None, commit=None, **kwargs):
        if not isinstance(data, Mapping):
            raise TypeError("wandb.log expects a dict")
        with self._lock:
            if step is not None and step < self.step:
                print(f"trainables: wandb.log step {step} < current step {self.step}: ignored", file=sys.stderr)
                return
            if step is not None and step > self.step and self._row:
                self._commit()  # a new step commits the row of the previous one
            if step is not None:
                self.step = step
            self._row.update(numbers(data))
            if commit or (commit is None and step is None):
                self._commit()

    def _commit(self):
        with self._lock:
            if self._row:
                send({"row": self._row, "step": self.step})
            self._row = {}
            self.step += 1

    def finish(self, exit_code=None, quiet=None):
        global run
        if self._finished:
            return
        self._commit()
        self._finished = True
        send({"finish": int(exit_code or 0)})
        if run is self:
            run = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.finish(exit_code=1 if exc_type else 0)
        return False

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        _warn(f"run.{name}")
        return _Noop()


config = Config()
summary = Summary()
run: Run | None = None


def init(*args, config=None, name=None, project=None, group=None, tags=None, notes=None, reinit=None, **kwargs):
    """A run whose config holds, in W&B's order: config-defaults.yaml, `config=`, the sweep's values."""
    global run
    if run is not None and not reinit:
        return run
    if run is not None:
        run._commit()  # reinit: the earlier run's pending row is its last
    values: dict = {}
    if os.path.exists("config-defaults.yaml"):
        try:
            import yaml

            with open("config-defaults.yaml") as f:
                raw = yaml.safe_load(f) or {}
            values = {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in raw.items()
                      if k != "wandb_version"}
        except ImportError:
            _warn("config-defaults.yaml (needs PyYAML)")
    if isinstance(config, str):  # a YAML file, as wandb reads it
        try:
            import yaml

            with open(config) as f:
                config = {k: (v["value"] if isinstance(v, dict) and "value" in v else v)
                          for k, v in (yaml.safe_load(f) or {}).items() if k != "wandb_version"}
        except ImportError:
            _warn("init(config=<file>) (needs PyYAML)")
            config = None
    if config is not None:
        given = dict(vars(config) if hasattr(config, "__dict__") and not isinstance(config, dict) else config)
        exclude, include = kwargs.get("config_exclude_keys"), kwargs.get("config_include_keys")
        given = {k: v for k, v in given.items() if (not exclude or k not in exclude) and (not include or k in include)}
        values = _merge(values, given)
    sweep = _load_sweep()
    values = _merge(values, sweep)
    globals()["config"] = cfg = Config(values, locked=set(sweep))
    run = Run(cfg, name=name, project=project, group=group, tags=tags, notes=notes)
    globals()["summary"] = run.summary
    return run


def log(data, step=None, commit=None, **kwargs):
    if run is None:
        raise RuntimeError("wandb.log() before wandb.init()")  # as wandb does
    run.log(data, step=step, commit=commit)


def finish(exit_code=None, quiet=None):
    if run is not None:
        run.finish(exit_code=exit_code)


def sweep(sweep=None, *args, **kwargs) -> str:
    """In a trial the sweep already runs: its id."""
    return os.environ.get("WANDB_SWEEP_ID", "trainables")


def agent(sweep_id=None, function=None, count=None, **kwargs) -> None:
    """In a trial: one run of `function`, the trial's (the `wandb.agent(sweep_id, train)` pattern)."""
    if function is not None:
        function()
    finish()


def login(*args, **kwargs) -> bool:
    return True


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    _warn(name)
    return _Noop()


class Error(Exception):
    """wandb.Error, and every class of wandb.errors: real exceptions, so `except wandb.errors.X:` works."""


class _Errors(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = type(name, (Error,), {})
        setattr(self, name, cls)
        return cls


class _Submodule(types.ModuleType):
    """wandb.sdk, wandb.integration.keras, ...: every name a no-op (named once on stderr)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        _warn(f"{self.__name__.removeprefix('wandb.')}.{name}")
        return _Noop


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.startswith("wandb.") and fullname not in sys.modules:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = (_Errors if spec.name == "wandb.errors" else _Submodule)(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


sys.meta_path.append(_Finder())
errors = importlib.import_module("wandb.errors")


atexit.register(lambda: run._commit() if run is not None and not run._finished and run._pid == os.getpid() else None)
