"""The spec's schema: one pydantic model per section (extra keys forbidden), parameters parsed once."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_serializer,
    model_validator,
)

from trainables.core.data import DatasetConfig
from trainables.core.numbers import reject_bools
from trainables.spec.space import Choice, Space, grid_size

METRICS = ("val_acc", "val_loss", "train_acc", "train_loss", "total_params", "trainable_params", "epoch_seconds",
           "samples_per_second")  # what the classifier reports each epoch


SEED_MAX = 2**32 - 1  # NumPy's seeds are 32-bit; PyTorch's take more
MAX_TRIALS = 100_000  # trials in one sweep (num_samples, or grid combinations times repeats)


class _Section(BaseModel):
    # allow_inf_nan: `cpu: .inf` or `epochs: .nan` would pass a bound check and hang or break later
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    _no_bools = field_validator("*", mode="before")(reject_bools)  # `epochs: true` is not one epoch


class SearchConfig(_Section):
    algorithm: Literal["optuna", "random", "grid"] = "optuna"
    sampler: Literal["tpe", "nsga2"] = "tpe"  # optuna: TPE (multi-objective too) or NSGA-II
    # trials (default 10); grid: repeats of the whole grid (default 1)
    num_samples: int | None = Field(default=None, ge=1, le=MAX_TRIALS)
    max_concurrent: int | None = Field(default=None, ge=1, le=MAX_TRIALS)  # None: as many as resources allow
    seed: int | None = Field(default=0, ge=0, le=SEED_MAX)
    points_to_evaluate: list[dict[str, Any]] = []  # configurations to try first (optuna)
    # earlier sweeps (names under the storage, or folders) whose finished trials the optuna search
    # is given as observations before its first trial
    warm_start: list[str] = Field(default=[], max_length=100)


class SchedulerConfig(_Section):
    name: Literal["asha", "hyperband", "median", "fifo", "pbt"] = "asha"
    grace_period: int = Field(default=1, ge=1, le=1_000_000)  # asha, median: epochs before a trial may be stopped
    reduction_factor: float = Field(default=3.0, gt=1.0, le=1000.0)  # asha, hyperband
    brackets: int = Field(default=1, ge=1, le=10)  # asha
    perturbation_interval: int = Field(default=2, ge=1, le=1_000_000)  # pbt: epochs between exploit/explore
    quantile_fraction: float = Field(default=0.25, gt=0.0, le=0.5)  # pbt
    mutations: list[str] | None = None  # pbt: searched parameters to perturb (default: all of them)
    # asha: the epochs at which trials are compared (W&B hyperband's bands), instead of grace_period x
    # reduction_factor^k; the top 1/reduction_factor at each goes on
    milestones: list[int] | None = Field(default=None, min_length=1, max_length=100)

    def unused(self) -> list[str]:
        """The settings given that this scheduler does not take (a spec switched with -o scheduler.name=...)."""
        takes = {"asha": {"grace_period", "reduction_factor", "brackets", "milestones"},
                 "hyperband": {"reduction_factor"}, "median": {"grace_period"}, "fifo": set(),
                 "pbt": {"perturbation_interval", "quantile_fraction", "mutations"}}[self.name]
        return sorted(self.model_fields_set - {"name"} - takes)

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, m: list[int] | None) -> list[int] | None:
        if m is not None and (any(x < 1 for x in m) or any(b <= a for a, b in zip(m, m[1:], strict=False))):
            raise ValueError("milestones must be increasing epochs >= 1")
        return m


class ResourcesConfig(_Section):
    cpu: float = Field(default=1.0, gt=0.0, le=4096.0)
    gpu: float = Field(default=0.0, ge=0.0, le=1024.0)  # fractional: several trials share one GPU
    workers: int = Field(default=1, ge=1, le=4096)  # > 1: one trial trains data-parallel on several workers

    @model_validator(mode="after")
    def _gpu_share(self) -> "ResourcesConfig":
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise ValueError(f"gpu above 1 must be a whole number, got {self.gpu}")
        return self


class TrackingConfig(_Section):
    enabled: bool = True
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    # None: the spec's name. MLflow takes 500 characters (it said so only once Ray had started, blaming tracking.uri)
    experiment: str | None = Field(default=None, min_length=1, max_length=500, pattern=r"^[^\x00-\x1f]*$")
    register_model: bool = Field(default=False, alias="register")  # `register:` the best model in the Model Registry


def _auto_or_bool(v: Any) -> Any:
    if v == "auto" or isinstance(v, bool):
        return v
    raise ValueError("expected auto, true or false")


AutoBool = Annotated[Literal["auto"] | bool, BeforeValidator(_auto_or_bool)]


def _auto_or_epochs(v: Any) -> Any:
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1_000_000):
        return v
    raise ValueError("expected auto, or a whole number of epochs greater than or equal to 1")


AutoEpochs = Annotated[Literal["auto"] | int, BeforeValidator(_auto_or_epochs)]


class PerformanceConfig(_Section):
    """Speed switches; `auto` is on where the trial has a CUDA device (see engine.resolve_performance)."""

    # auto: bf16 on GPUs with native bf16 (Ampere+), fp16 with loss scaling on older ones, fp32 on CPUs
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: AutoBool = "auto"  # NHWC memory layout for model and inputs
    compile: bool = False  # torch.compile the training module (compilation time is paid per trial)
    cudnn_benchmark: bool = True  # let cuDNN pick the fastest convolution algorithms
    data_on_device: AutoBool = "auto"  # small datasets held as tensors on the GPU
    reuse_actors: bool = True  # a finished trial's Ray process (imports, dataset) serves the next trial
    # epochs between a trial's checkpoints (what a failed or resumed trial goes on from); auto: every
    # epoch under pbt and hyperband (they pause and clone trials from them), else the first epoch end
    # 30 s after the last checkpoint; always after the last epoch
    checkpoint_every: AutoEpochs = "auto"

    def trial_options(self) -> dict[str, Any]:
        """The keyword options of engine.run_trial."""
        return self.model_dump(exclude={"reuse_actors", "checkpoint_every"})


WANDB_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")  # W&B's default
MACROS = ("${env}", "${interpreter}", "${program}", "${args}", "${args_no_hyphens}", "${args_no_equals}",
          "${args_no_boolean_flags}", "${args_json}", "${args_json_file}", "${args_append_hydra}",
          "${args_override_hydra}")  # W&B's agent's, expanded by tune/program.py
ENVVAR = re.compile(r"\$\{envvar:([A-Z_][A-Z0-9_]*)\}")  # anywhere in an element


def runs_module(command: list[str]) -> bool:
    """The command runs ${program} as a module (`python -m ${program}`), not as a file."""
    return any(a == "-m" and b == "${program}" for a, b in zip(command, command[1:], strict=False))


class ProgramConfig(_Section):
    """`trainable: program`: each trial runs a training script (a W&B sweep's `program`), which reports
    through `wandb.log` to a stand-in for wandb (tune/program.py)."""

    file: str = Field(min_length=1, max_length=4096)  # W&B's `program`, relative to where `tune run` starts
    command: list[str] = Field(default=list(WANDB_COMMAND), min_length=1, max_length=1000)  # W&B's macros
    # W&B's nested `parameters:`: each flattened name's place in the program's config (`opt.lr: [opt, lr]`
    # reaches the program as config["opt"]["lr"]); other names reach it as they are
    nested: dict[str, list[str]] = Field(default={}, max_length=100_000)

    @field_validator("command")
    @classmethod
    def _macros(cls, command: list[str]) -> list[str]:
        unknown = [c for c in command if re.fullmatch(r"\$\{[^}]*\}", c) and c not in MACROS
                   and not ENVVAR.fullmatch(c)]
        if unknown:  # W&B's agent would drop them without a word
            raise ValueError(f"unknown macro {unknown[0]}; the macros are {', '.join(MACROS)} and ${{envvar:NAME}}")
        return command


class FinalConfig(_Section):
    retrain_best: bool = False  # retrain the best config for `epochs`, then score the test split
    report: bool = True  # write reports/<name>/ at the end of `tune run`
    # several objectives: the best trial is the Pareto-optimal one best by this {metric: max | min}
    # (default: the first objective)
    select: dict[str, Literal["max", "min"]] | None = Field(default=None, min_length=1, max_length=1)


def _to_space(v: Any) -> Space:
    """A Space as it is (load_spec parses it, with errors that point at the line), else parsed here."""
    if isinstance(v, Space):
        return v
    if not isinstance(v, dict):
        raise ValueError("expected a mapping of parameter names to values or distributions")
    return Space.parse(v)


ParametersField = Annotated[Space, BeforeValidator(_to_space), PlainSerializer(lambda s: s.raw, return_type=dict)]


class Spec(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    description: str = ""
    trainable: str = "classifier"  # or "package.module:function" (a Ray Tune function trainable), or "program"
    program: ProgramConfig | None = None  # with trainable: program
    dataset: DatasetConfig = DatasetConfig()
    metric: str = Field(default="val_acc", min_length=1, max_length=200)  # the first objective, when several
    mode: Literal["max", "min"] = "max"
    # every objective, (metric, mode): from `metric: [a, b]` and `mode: [max, min]` (one when a single metric)
    objectives: tuple[tuple[str, Literal["max", "min"]], ...] = Field(default=(), exclude=True)
    constraints: list[str] = Field(default=[], max_length=100)  # e.g. "total_params <= 2e6", checked before training
    epochs: int = Field(default=10, ge=1, le=1_000_000)
    max_failures: int = Field(default=1, ge=0, le=1000)  # retries of a failed trial from its last checkpoint
    parameters: ParametersField = Space({})  # name -> Param, parsed once
    search: SearchConfig = SearchConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
    performance: PerformanceConfig = PerformanceConfig()
    final: FinalConfig = FinalConfig()

    # Filled by load_spec, not by the user.
    source: str | None = Field(default=None, exclude=True)
    text_hash: str | None = Field(default=None, exclude=True)
    notes: tuple[str, ...] = Field(default=(), exclude=True)  # how a W&B sweep config was read (spec/wandb.py)

    @model_validator(mode="before")
    @classmethod
    def _objectives(cls, data: Any) -> Any:
        """`metric: [a, b]`, `mode: [max, min]`: metric and mode are the first; objectives holds them all."""
        if not isinstance(data, dict):
            return data
        if "objectives" in data:
            raise ValueError("unknown key 'objectives': write metric: [a, b] and mode: [max, min]")
        metric, mode = data.get("metric", "val_acc"), data.get("mode", "max")
        if not isinstance(metric, list) and not isinstance(mode, list):
            return {**data, "objectives": ((metric, mode),)} if isinstance(metric, str) and mode in ("max", "min") \
                else data
        metrics = metric if isinstance(metric, list) else [metric]
        modes = mode if isinstance(mode, list) else [mode] * len(metrics)
        if not metrics:
            raise ValueError("metric: an empty list; name one metric (val_acc), or several with one mode each")
        if len(modes) != len(metrics):
            raise ValueError(f"metric and mode: one mode per metric, got {len(metrics)} metrics and {len(modes)} "
                             f"modes")
        if not all(isinstance(m, str) and m for m in metrics) or len(set(metrics)) != len(metrics):
            raise ValueError(f"metric: expected distinct metric names, got {metrics}")
        if any(m not in ("max", "min") for m in modes):
            raise ValueError(f"mode: expected max or min for each metric, got {modes}")
        return {**data, "metric": metrics[0], "mode": modes[0], "objectives": tuple(zip(metrics, modes, strict=True))}

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        out = handler(self)
        if len(self.objectives) > 1:  # back as the user wrote it
            out["metric"], out["mode"] = [m for m, _ in self.objectives], [d for _, d in self.objectives]
        return out

    @property
    def multi(self) -> bool:
        """Several objectives: a Pareto front rather than one best."""
        return len(self.objectives) > 1

    @property
    def num_samples(self) -> int:
        """Trials in the sweep; with grid search, every combination times search.num_samples."""
        if self.search.algorithm == "grid":
            return len(self.search.points_to_evaluate) + grid_size(self.space) * (self.search.num_samples or 1)
        grids = 1  # random search: Ray crosses every `grid:` with num_samples draws
        for p in self.space.values():
            grids *= len(p.values) if isinstance(p, Choice) and p.grid else 1
        return (self.search.num_samples or 10) * grids

    @property
    def checkpoint_every(self) -> int | None:
        """Epochs between a trial's checkpoints; None: by time (see core.checkpoint.Cadence)."""
        every = self.performance.checkpoint_every
        if every == "auto":
            return 1 if self.scheduler.name in ("pbt", "hyperband") else None
        return every

    @property
    def space(self) -> Space:
        return self.parameters

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def ends_itself(self) -> bool:
        """A trainable that decides how long it runs (a program, a function of the user's): one that ended
        without being stopped completed, whatever its epoch count."""
        return self.trainable != "classifier"

    @property
    def searched(self) -> list[str]:
        return self.parameters.searched
