"""The YAML search-space format (v1): load, override, validate. Raw dicts exist only here.

`load_spec(path, overrides)` returns a validated `Spec` or raises `SpecError` naming the
file, the key path and the line.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from trainables.data import DatasetConfig
from trainables.errors import SpecError
from trainables.space import Choice, Param, ParamError, ordered, parse_param

METRICS = ("val_acc", "val_loss", "train_acc", "train_loss")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SearchConfig(_Section):
    algorithm: Literal["optuna", "random", "grid"] = "optuna"
    num_samples: int | None = Field(default=None, ge=1)  # trials (default 10); grid: repeats of the whole grid (default 1)
    max_concurrent: int | None = Field(default=None, ge=1)  # None: as many as resources allow
    seed: int | None = 0
    points_to_evaluate: list[dict[str, Any]] = []  # configurations to try first (optuna)


class SchedulerConfig(_Section):
    name: Literal["asha", "hyperband", "median", "fifo", "pbt"] = "asha"
    grace_period: int = Field(default=1, ge=1)  # asha, median: epochs before a trial may be stopped
    reduction_factor: float = Field(default=3.0, gt=1.0)  # asha, hyperband
    brackets: int = Field(default=1, ge=1)  # asha
    perturbation_interval: int = Field(default=2, ge=1)  # pbt: epochs between exploit/explore
    quantile_fraction: float = Field(default=0.25, gt=0.0, le=0.5)  # pbt
    mutations: list[str] | None = None  # pbt: searched parameters to perturb (default: all of them)


class ResourcesConfig(_Section):
    cpu: float = Field(default=1.0, gt=0.0)
    gpu: float = Field(default=0.0, ge=0.0)  # fractional: several trials share one GPU
    workers: int = Field(default=1, ge=1)  # > 1: one trial trains data-parallel on several workers

    @model_validator(mode="after")
    def _gpu_share(self) -> "ResourcesConfig":
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise ValueError(f"gpu above 1 must be a whole number, got {self.gpu}")
        return self


class TrackingConfig(_Section):
    enabled: bool = True
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str | None = None  # None: the spec's name
    register_model: bool = Field(default=False, alias="register")  # `register:` the best model in the Model Registry


def _auto_or_bool(v: Any) -> Any:
    if v == "auto" or isinstance(v, bool):
        return v
    raise ValueError("expected auto, true or false")


AutoBool = Annotated[Literal["auto"] | bool, BeforeValidator(_auto_or_bool)]


class PerformanceConfig(_Section):
    """Speed switches; `auto` is on where the trial has a CUDA device (see engine.resolve_performance)."""

    precision: Literal["auto", "fp32", "bf16"] = "auto"  # bf16 autocast on GPUs that support it
    channels_last: AutoBool = "auto"  # NHWC memory layout for model and inputs
    compile: bool = False  # torch.compile the training module (compilation time is paid per trial)
    cudnn_benchmark: bool = True  # let cuDNN pick the fastest convolution algorithms
    data_on_device: AutoBool = "auto"  # small datasets held as tensors on the GPU
    reuse_actors: bool = True  # a finished trial's Ray process (imports, dataset) serves the next trial

    def trial_options(self) -> dict[str, Any]:
        """The keyword options of engine.run_trial."""
        return self.model_dump(exclude={"reuse_actors"})


class FinalConfig(_Section):
    retrain_best: bool = False  # retrain the best config for `epochs`, then score the test split
    report: bool = True  # write reports/<name>/ at the end of `tune run`


class Spec(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    description: str = ""
    trainable: str = "classifier"  # or "package.module:function", a Ray Tune function trainable
    dataset: DatasetConfig = DatasetConfig()
    metric: str = "val_acc"
    mode: Literal["max", "min"] = "max"
    epochs: int = Field(default=10, ge=1)
    max_failures: int = Field(default=1, ge=0)  # retries of a failed trial from its last checkpoint
    parameters: dict[str, Any] = {}
    search: SearchConfig = SearchConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
    performance: PerformanceConfig = PerformanceConfig()
    final: FinalConfig = FinalConfig()

    # Filled by load_spec, not by the user.
    source: str | None = Field(default=None, exclude=True)
    text_hash: str | None = Field(default=None, exclude=True)

    @property
    def num_samples(self) -> int:
        """Trials in the sweep; with grid search, every combination times search.num_samples."""
        if self.search.algorithm == "grid":
            from trainables.space import grid_points

            return len(self.search.points_to_evaluate) + len(grid_points(self.space)) * (self.search.num_samples or 1)
        grids = 1  # random search: Ray crosses every `grid:` with num_samples draws
        for p in self.space.values():
            grids *= len(p.values) if isinstance(p, Choice) and p.grid else 1
        return (self.search.num_samples or 10) * grids

    @property
    def space(self) -> dict[str, Param]:
        return {k: parse_param(v) for k, v in self.parameters.items()}

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def searched(self) -> list[str]:
        return [k for k, p in self.space.items() if p.searched]


# ---- YAML with line numbers ---------------------------------------------------------------

def _lines(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Key path -> 1-based line, for every mapping key and sequence item."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark.line + 1
            _lines(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[path + (i,)] = v.start_mark.line + 1
            _lines(v, path + (i,), out)
    return out


def _path_str(path: tuple) -> str:
    s = ""
    for p in path:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s


class _Doc:
    """A parsed YAML file and the means to point at a place in it."""

    def __init__(self, file: str, text: str):
        self.file = file
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = yaml.load(text, Loader=yaml.SafeLoader)  # safe: never runs !!python tags
        except yaml.constructor.ConstructorError as e:
            line = e.problem_mark.line + 1 if e.problem_mark else None
            raise SpecError(f"tag not allowed: {e.problem.split('tag')[-1].strip()} (only plain YAML values are accepted)", file=file, line=line) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            problem = getattr(e, "problem", None) or str(e)
            raise SpecError(f"invalid YAML: {problem}", file=file, line=mark.line + 1 if mark else None) from None
        self.lines = _lines(node) if node is not None else {}

    def error(self, message: str, path: tuple) -> SpecError:
        line = None
        for i in range(len(path), 0, -1):  # the deepest known ancestor
            if path[:i] in self.lines:
                line = self.lines[path[:i]]
                break
        return SpecError(message, file=self.file, path=_path_str(path) or None, line=line)


# ---- overrides ----------------------------------------------------------------------------

def apply_overrides(data: dict, overrides: list[str], *, file: str) -> dict:
    """`key.path=value` with value parsed as YAML; new keys allowed (validation checks them)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"override {item!r}: expected key.path=value", file=file, path="-o")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise SpecError(f"override {item!r}: the value is not valid YAML ({getattr(e, 'problem', e)})", file=file, path=key) from None
        parts = key.strip().split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise SpecError(f"override {item!r}: {'.'.join(parts[: i + 1])} is a {type(nxt).__name__}, not a mapping", file=file, path=key)
            node = nxt
        node[parts[-1]] = value
    return data


# ---- validation ---------------------------------------------------------------------------

def _did_you_mean(word: Any, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The known keys of the section a pydantic error location points into."""
    for part in loc[:-1]:
        ann = model.model_fields.get(part) if isinstance(part, str) else None
        if ann is None or not (isinstance(ann.annotation, type) and issubclass(ann.annotation, BaseModel)):
            return []
        model = ann.annotation
    return [info.alias or name for name, info in model.model_fields.items() if not info.exclude]


def _pydantic_error(doc: _Doc, exc: ValidationError, model: type[BaseModel] = Spec) -> SpecError:
    msgs = []
    first = None
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}{_did_you_mean(loc[-1], _fields_at(model, loc))}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and err["type"] not in ("model_type",):
                msg += f" (got {err['input']!r})"
        e = doc.error(msg, loc)
        first = first or e
        msgs.append(str(e))
    if len(msgs) > 1:
        return SpecError("\n  ".join(["several problems:"] + msgs))
    return first


def load_spec(path: str | os.PathLike, overrides: list[str] | tuple = ()) -> Spec:
    """Read, override and validate a spec file."""
    file = str(path)
    p = Path(path)
    if not p.is_file():
        raise SpecError("no such file" if not p.exists() else "not a file", file=file)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read: {e}", file=file) from None
    return parse_spec(text, file=file, overrides=overrides)


def parse_spec(text: str, *, file: str = "<spec>", overrides: list[str] | tuple = ()) -> Spec:
    doc = _Doc(file, text)
    data = doc.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"expected a mapping of keys (name, dataset, parameters, ...), got {type(data).__name__}", file=file, line=1)
    data = apply_overrides(data, list(overrides), file=file)
    if not isinstance(data.get("parameters", {}), dict):
        raise doc.error("expected a mapping of parameter names to values or distributions", ("parameters",))
    try:
        spec = Spec(**data)
    except ValidationError as exc:
        raise _pydantic_error(doc, exc) from None
    except TypeError as exc:  # non-string keys
        raise SpecError(f"invalid keys: {exc}", file=file) from None
    spec = spec.model_copy(update={"source": file, "text_hash": hashlib.sha256(text.encode()).hexdigest()[:16]})
    _check_parameters(spec, doc)
    _check_search(spec, doc)
    return spec


def _check_parameters(spec: Spec, doc: _Doc) -> None:
    space: dict[str, Param] = {}
    for name, raw in spec.parameters.items():
        try:
            space[name] = parse_param(raw)
        except ParamError as e:
            raise doc.error(str(e), ("parameters", name) + ((e.key,) if e.key is not None else ())) from None
    try:
        ordered(space)
    except ParamError as e:
        bad = next(n for n, p in space.items() if p.when and (e.key == "when"))
        raise doc.error(str(e), ("parameters", bad, "when")) from None
    if spec.trainable == "classifier":
        _check_models(spec, space, doc)
    else:
        _check_trainable_import(spec, doc)


def _check_trainable_import(spec: Spec, doc: _Doc) -> None:
    mod, sep, fn = spec.trainable.partition(":")
    if not sep or not mod or not fn:
        raise doc.error(f"expected 'classifier' or 'package.module:function', got {spec.trainable!r}", ("trainable",))
    try:
        obj = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise doc.error(f"cannot import {spec.trainable!r}: {e}", ("trainable",)) from None
    if not callable(obj):
        raise doc.error(f"{spec.trainable!r} is not callable", ("trainable",))


def _check_models(spec: Spec, space: dict[str, Param], doc: _Doc) -> None:
    """Every value a trial may see is valid for every model it may be paired with."""
    from trainables.engine import TRAINING_KEYS, Training
    from trainables.models import get_model, model_names

    if spec.metric not in METRICS:
        raise doc.error(f"the classifier reports {', '.join(METRICS)}; got {spec.metric!r}{_did_you_mean(spec.metric, METRICS)}", ("metric",))
    model_param = space.get("model")
    names = model_param.candidates() if model_param is not None else ["cnn"]
    entries = []
    for i, n in enumerate(names):
        try:
            entries.append(get_model(n))
        except (ValueError, TypeError):
            sub = ("parameters", "model") + (() if model_param is None or not model_param.searched else (_dist_key(spec, "model"), i))
            raise doc.error(f"unknown model {n!r}; expected one of {', '.join(model_names())}{_did_you_mean(n, model_names())}", sub) from None
    for name, p in space.items():
        if name == "model":
            continue
        owners = [e for e in entries if name in e.params.model_fields]
        if name not in TRAINING_KEYS and not owners:
            known = sorted(TRAINING_KEYS | {f for e in entries for f in e.params.model_fields})
            raise doc.error(f"unknown hyperparameter for model {', '.join(e.name for e in entries)}{_did_you_mean(name, known)}", ("parameters", name))
        # Each value alone against each owner: the field's type, bounds and validators.
        owners_of = [Training] if name in TRAINING_KEYS else [e.params for e in owners]
        for i, value in enumerate(p.candidates()):
            for owner in owners_of:
                try:
                    owner.model_validate({name: value})
                except ValidationError as exc:
                    msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
                    who = "training" if owner is Training else next(e.name for e in owners if e.params is owner)
                    sub = ("parameters", name) + ((_dist_key(spec, name), i) if p.searched else ())
                    raise doc.error(f"{value!r} is not valid for {who}.{name}: {msg}", sub) from None
    _check_image_size(spec, entries, space, doc)


def _dist_key(spec: Spec, name: str) -> str:
    raw = spec.parameters[name]
    return next((k for k in raw if k != "when"), "") if isinstance(raw, dict) else ""


def _check_image_size(spec: Spec, entries, space, doc: _Doc) -> None:
    from trainables.models.registry import Preprocess

    size = spec.dataset.image_size or {"digits": 32, "mnist": 28, "cifar10": 32, "fake": 32}.get(spec.dataset.name)
    if size is None:
        return
    for e in entries:
        fixed = {k: p.candidates()[0] for k, p in space.items() if k in e.params.model_fields and not p.searched}
        try:
            pre: Preprocess = e.preprocess(e.params(**fixed))
        except ValidationError:
            continue
        if pre.image_size is None and size < pre.min_image_size:
            raise doc.error(f"model {e.name} needs image_size >= {pre.min_image_size}, got {size}", ("dataset", "image_size"))


def _check_search(spec: Spec, doc: _Doc) -> None:
    space = spec.space
    algo = spec.search.algorithm
    for name, p in space.items():
        if algo == "optuna" and isinstance(p, Choice) and p.grid:
            raise doc.error("grid is not supported with search.algorithm optuna (use choice, or algorithm random or grid)", ("parameters", name, "grid"))
        if algo == "grid" and p.searched:
            try:
                p.candidates() if isinstance(p, Choice) else p.grid_values()
            except (ValueError, AttributeError):
                raise doc.error("search.algorithm grid enumerates every value: use choice, grid, int or quniform here, or algorithm random", ("parameters", name)) from None
    sched = spec.scheduler
    if sched.name == "pbt" and algo == "optuna":
        raise doc.error("pbt explores by itself and takes no search algorithm: use search.algorithm random", ("scheduler", "name"))
    if spec.scheduler.name == "pbt":
        muts = spec.scheduler.mutations or spec.searched
        for i, m in enumerate(muts):
            if m not in space or not space[m].searched:
                raise doc.error(f"pbt mutates searched parameters; {m!r} is not one{_did_you_mean(m, spec.searched)}", ("scheduler", "mutations", i))
        if not muts:
            raise doc.error("pbt needs at least one searched parameter to mutate", ("scheduler", "name"))
    for i, point in enumerate(spec.search.points_to_evaluate):
        for k, v in point.items():
            if k not in space:
                raise doc.error(f"unknown parameter {k!r}{_did_you_mean(k, space)}", ("search", "points_to_evaluate", i, k))
            p = space[k]
            if isinstance(p, Choice) and v not in p.values:
                raise doc.error(f"{v!r} is not among the choices {list(p.values)}", ("search", "points_to_evaluate", i, k))
            if hasattr(p, "low") and not (p.low <= v <= p.high):
                raise doc.error(f"{v!r} is outside [{p.low}, {p.high}]", ("search", "points_to_evaluate", i, k))
