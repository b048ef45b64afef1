"""The `tune` command (also `python -m trainables`): our commands plus Ray Tune's own."""
from __future__ import annotations

import os
import shlex
import signal
import sys
from pathlib import Path

import click

from trainables.errors import SECONDS, SpecError, env_seconds, redact


def _fail(e: Exception, overrides: tuple[str, ...] = ()) -> None:
    if isinstance(e, SpecError):
        from trainables.spec.load import located

        e = located(e, overrides)  # a check after parsing names the key: the line too (not one -o set)
    click.echo(f"error: {redact(str(e))}", err=True)  # a value quoted back may hold a URI's password
    sys.exit(2)


RAY_COMMANDS = ("ls", "lsx", "list-trials", "list-experiments", "add-note")


class TuneGroup(click.Group):
    """Our commands, plus Ray Tune's own `tune` subcommands, loaded only when asked for."""

    def list_commands(self, ctx):
        return super().list_commands(ctx) + list(RAY_COMMANDS)

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None and name in RAY_COMMANDS:
            from ray.tune.cli.scripts import cli as ray_cli

            command = ray_cli.get_command(ctx, name)
        return command


@click.group(cls=TuneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trainables")
def cli() -> None:
    """Hyperparameter sweeps for PyTorch image classifiers on Ray Tune.

    One YAML file describes the search space; `tune run` searches it with Optuna and
    ASHA, logs every trial to MLflow and ends with a table of the best trials.
    """


overrides_opt = click.option("-o", "--override", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                             help="Override any key of the spec, e.g. -o search.num_samples=4 (value read as YAML).")
storage_opt = click.option("--storage", metavar="PATH|URI",
                           help="Where sweeps are kept (default ./results, or $TRAINABLES_STORAGE); "
                                "s3://, gs:// or a shared path on a cluster.")


@cli.command()
@click.argument("spec_file", metavar="SPEC.yaml")
@overrides_opt
@click.option("--offline", is_flag=True, help="Skip the checks that need the network (the MLflow server).")
def validate(spec_file, overrides, offline):
    """Check a spec without running it: the YAML, the dataset's files (every image decodes), weights
    files, a custom trainable, and (unless --offline) the MLflow server; print the resolved space."""
    from trainables.spec.load import load_spec
    from trainables.spec.preflight import preflight
    from trainables.spec.space import describe

    try:
        spec = _feasible(preflight(_said(load_spec(spec_file, overrides)), say=click.echo))
        for name in SECONDS:  # as `tune run` checks them
            env_seconds(name)
        if spec.tracking.enabled and not offline:
            from trainables.tracking.server import check_reachable, resolve_uri

            check_reachable(resolve_uri(spec.tracking.uri), file=spec.source)
    except SpecError as e:
        _fail(e, overrides)
    length = "each until its program ends" if spec.program is not None else f"x up to {spec.epochs} epochs"
    goals = ", ".join(f"{m} ({d})" for m, d in spec.objectives)
    click.echo(f"{spec_file}: valid. Sweep {spec.name!r}: {spec.num_samples} trial(s) {length}, "
               f"{spec.search.algorithm} search, {spec.scheduler.name} scheduler, "
               f"{'objectives' if spec.multi else 'metric'} {goals}.")
    if spec.program is not None:
        click.echo(f"program: {spec.program.file}, run as {' '.join(spec.program.command)}")
    else:
        click.echo(f"dataset: {spec.dataset.name}" + (f" from {spec.dataset.root}" if spec.dataset.root else ""))
    click.echo("parameters:")
    width = max((len(k) for k in spec.parameters), default=0)
    for name, p in spec.space.items():
        click.echo(f"  {name:<{width}}  {describe(p)}")


def _feasible(spec):
    """Constraints that no configuration drawn before the sweep satisfies: bad input, not an empty sweep."""
    from trainables.search.feasible import check_feasible

    held, tried = check_feasible(spec)
    if tried and not held:
        raise SpecError(f"none of {tried} configurations drawn from the space satisfies the constraints "
                        f"({'; '.join(spec.constraints)}): the sweep would train nothing", file=spec.source,
                        path="constraints")
    return spec


def _said(spec):
    """The spec, after saying how a W&B sweep config was read."""
    for note in spec.notes:
        click.echo(f"W&B sweep config: {note}")
    return spec


@cli.command()
@click.argument("sweep_file", metavar="SWEEP.yaml")
def convert(sweep_file):
    """Print the trainables spec for a W&B sweep config (to switch for good: tune convert sweep.yaml > it.yaml).
    `tune run` and `tune validate` also take the W&B file as it is."""
    from trainables.spec.load import load_wandb
    from trainables.spec.reader import dump

    try:
        translation = load_wandb(sweep_file)
    except SpecError as e:
        _fail(e)
    header = [f"# translated by `tune convert {sweep_file}` from a W&B sweep config"]
    header += [f"# {note}" for note in translation.notes]
    click.echo("\n".join(header) + "\n" + dump(translation.spec), nl=False)


@cli.command()
@click.argument("spec_file", metavar="SPEC.yaml")
@overrides_opt
@click.option("--address", envvar="RAY_ADDRESS", metavar="ADDR", help="Join a running Ray cluster (host:port, auto, ray://...).")
@storage_opt
@click.option("--resume", is_flag=True,
              help="Continue the interrupted sweep of the same name (errored trials resumed too).")
@click.option("--dry-run", is_flag=True, help="Validate and show the plan, start nothing.")
def run(spec_file, overrides, address, storage, resume, dry_run):
    """Run the sweep described by SPEC.yaml.

    Exit code 0 when the sweep finished (even if some trials errored), 1 when every trial
    failed, 2 for bad input, 130 (Ctrl-C) or 143 (SIGTERM) when interrupted: the sweep's state is
    kept and the command to continue it is printed.
    """
    from trainables.results import layout
    from trainables.spec.load import load_spec
    from trainables.spec.preflight import preflight
    from trainables.tracking.server import check_reachable, resolve_uri
    from trainables.tune.interrupt import raise_pending
    from trainables.tune.warm_start import gather

    try:
        spec = _feasible(preflight(_said(load_spec(spec_file, overrides)), say=click.echo))
        for name in SECONDS:  # each is read when it is needed, one at the end of the sweep: checked now
            env_seconds(name)
        if spec.tracking.enabled and not dry_run:  # before Ray starts: a server that is down costs nothing
            check_reachable(resolve_uri(spec.tracking.uri), file=spec.source)
        path = layout.experiment_dir(spec, storage)
        # read only: a dry run says what the run would (a folder it cannot write, a sweep of that name)
        layout.check_writable(layout.storage_root(storage))
        if resume:
            layout.check_resumable(spec, path)
        else:
            layout.check_fresh(spec, path)
        warm = gather(spec, storage) if spec.search.warm_start and not resume else None  # JSON only: no Ray yet
        raise_pending()  # a signal whose exception the MLflow check swallowed
    except SpecError as e:
        raise_pending()  # ... or turned into an error of its own: the signal is what happened
        _fail(e, overrides)
    click.echo(f"sweep {spec.name!r}: {spec.num_samples} trials, {spec.search.algorithm} + {spec.scheduler.name}, "
               f"{spec.resources.cpu:g} CPU / {spec.resources.gpu:g} GPU per trial")
    click.echo(f"results: {redact(path)}")
    for line in warm.lines if warm else []:
        click.echo(line)
    if dry_run:
        click.echo("dry run: nothing started.")
        return
    from trainables.results.lock import lock_for
    from trainables.run import run_sweep
    from trainables.tune.cluster import connect
    from trainables.tune.interrupt import Interrupted, Interrupts

    again = ["tune", "run", spec_file, *(a for o in overrides for a in ("-o", o)),
             "--storage", layout.storage_root(storage), *(["--address", address] if address else []), "--resume"]
    interrupts = Interrupts()
    try:
        with lock_for(path).acquire(file=spec.source), interrupts:
            try:
                connect(address, say=click.echo)
            except SystemExit as e:  # ray.init's own SIGTERM handler, while it connects
                raise Interrupted(e.code) if e.code in (signal.SIGTERM, signal.SIGINT) else e from None
            interrupts.install()  # again: ray.init replaced the SIGTERM handler
            outcome = run_sweep(spec, storage=storage, resume=resume, interrupts=interrupts, warm=warm)
    except SpecError as e:
        if not interrupts.started:
            raise_pending()  # (as above: MLflow starting the parent run)
        _fail(e, overrides)
    except Interrupted as e:
        if not interrupts.started:
            click.echo(f"interrupted ({e.name}) before the sweep started: no trial ran", err=True)
            sys.exit(e.exit_code)
        if interrupts.finishing:
            click.echo(f"interrupted ({e.name}) after the trials, during the final steps (retrain, report): the "
                       f"sweep's results are in {redact(path)}; write its report with `tune report "
                       f"{layout.sweep_arg(path, spec.name)}`, or retrain and report with:\n  "
                       f"{redact(shlex.join(again))}",
                       err=True)
            sys.exit(e.exit_code)
        click.echo(f"interrupted ({e.name}): the sweep's state is saved in {redact(path)}; no report was written "
                   f"for the unfinished sweep. Continue it with:\n  {redact(shlex.join(again))}", err=True)
        sys.exit(e.exit_code)
    sys.exit(outcome)


@cli.command()
@click.argument("sweep", metavar="NAME|PATH")
@storage_opt
def best(sweep, storage):
    """Print the best trial's configuration as YAML, ready to paste as fixed parameters."""
    import yaml

    from trainables.results.read import load_sweep
    from trainables.spec.reader import dump

    try:
        s = load_sweep(sweep, storage)
    except SpecError as e:
        _fail(e)
    b = s.best()
    if b is None:
        _fail(SpecError(f"sweep {s.spec.name!r} has no trial with {' and '.join(m for m, _ in s.spec.objectives)} "
                        f"yet"))
    if s.spec.multi:  # the Pareto set as comments, then the one final.select picks
        click.echo(f"# Pareto-optimal trials of {s.spec.name} ({', '.join(f'{m} {d}' for m, d in s.spec.objectives)}):")
        for t in s.pareto():
            values = ", ".join(f"{m}={t.value(m):.6g}" for m, _ in s.spec.objectives)  # (pareto: all there)
            click.echo(f"#   trial {t.trial_id}: {values}" + ("   <- best" if t is b else ""))
    (metric, _), = (s.spec.final.select or {s.spec.metric: s.spec.mode}).items()
    value = b.value(metric)
    try:
        text = dump({"parameters": b.config}).rstrip()  # as a spec reads it back: "09" stays text
    except (yaml.YAMLError, RecursionError) as e:  # a damaged record: nested past the stack, ...
        _fail(SpecError(f"the best trial's configuration (trial {b.trial_id}) cannot be written as YAML: "
                        f"{type(e).__name__}"))
    click.echo(f"# best of {s.spec.name}: {metric}={'-' if value is None else f'{value:.4f}'} "
               f"(trial {b.trial_id}, {b.epochs} epochs, {b.status})")
    click.echo(text)


@cli.command()
@click.argument("sweep", metavar="NAME|PATH")
@storage_opt
@click.option("--out", default="reports", show_default=True, metavar="DIR",
              help="Where reports go, relative to the current directory: the report is DIR/<name>/.")
def report(sweep, storage, out):
    """Write DIR/<name>/ (report.md, report.html, figures/*.png) from a finished or interrupted
    sweep, and attach it to the sweep's MLflow parent run."""
    from trainables.report.write import write_report
    from trainables.results.read import load_sweep
    from trainables.tracking.models import attach_report

    try:
        s = load_sweep(sweep, storage)
        try:
            folder = write_report(s, Path(out).expanduser())
        except OSError as e:
            raise SpecError(f"cannot write the report under {out}: {e}", path="--out") from None
    except SpecError as e:
        _fail(e)
    figures = sorted((folder / "figures").glob("*.png"))
    click.echo(f"report: {folder / 'report.md'}, {folder / 'report.html'} and {len(figures)} figures "
               f"in {folder / 'figures'}")
    click.echo(attach_report(s.path, folder))


@cli.command()
@click.option("--quick", is_flag=True, help="A few minutes: one run of each side in figure 2, 5 seeds in figure 3.")
@click.option("--gpu", "gpu_only", is_flag=True, help="Only the GPU figures (5a-5d); skipped without a CUDA device.")
@click.option("--only", default="1,2,3,4,5,6", show_default=True, metavar="N,N", help="Figures to measure.")
@click.option("--out", default="reports/bench", show_default=True, metavar="DIR",
              help="Where results.json, results.md and figures/*.png go.")
@click.option("--work", default=None, metavar="DIR", help="Keep the benchmark sweeps and their logs here.")
@click.option("--tiny", is_flag=True, hidden=True)
def bench(quick, gpu_only, only, out, work, tiny):
    """Measure training throughput and sweep overhead against bare PyTorch and bare Ray Tune,
    side by side on this machine: one JSON line per figure, with its target."""
    from trainables.bench import ALL, run

    figures = tuple(x.strip() for x in only.split(",") if x.strip())
    bad = [x for x in figures if x not in ALL]
    if bad or not figures:
        _fail(SpecError(f"--only takes figure numbers among {','.join(ALL)}, got {only!r}", path="--only"))
    for option, folder in (("--out", out), ("--work", work)):  # made now: not after minutes of measuring
        try:
            if folder is not None:
                Path(folder).expanduser().mkdir(parents=True, exist_ok=True)
                if not os.access(Path(folder).expanduser(), os.W_OK | os.X_OK):
                    raise PermissionError(13, "not writable")
        except OSError as e:
            _fail(SpecError(f"cannot make the folder {folder}: {e.strerror or e}", path=option))
    work = str(Path(work).expanduser()) if work is not None else None
    sys.exit(run(out=Path(out).expanduser(), quick=quick, tiny=tiny, only=figures, gpu_only=gpu_only, work=work))


def _ray_auth_from_token() -> None:
    """A cluster started with `ray start` (Ray >= 2.5x) uses token auth, and a client only sends
    the token when RAY_AUTH_MODE=token is set before ray is imported: set it where a token exists."""
    import os

    token = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(token)):
        os.environ["RAY_AUTH_MODE"] = "token"


def ray_owns_tune() -> str | None:
    """The path of this environment's `tune` script when it is Ray Tune's own (installing or upgrading
    ray after this package puts Ray's back), else None."""
    import shutil

    for path in (Path(sys.executable).with_name("tune"), shutil.which("tune")):
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")[:4096] if path else ""
        except OSError:
            continue
        if "ray.tune.cli" in text:
            return str(path)
    return None


def main_trainables(argv: list[str] | None = None) -> None:
    """`trainables ARGS`: the same commands as `tune`, under a name no other package installs."""
    theirs = ray_owns_tune()
    if theirs:
        click.echo(f"note: `tune` on your PATH ({theirs}) is Ray Tune's own script, put back by installing or "
                   f"upgrading ray; `trainables ...` and `python -m trainables ...` are always this project's "
                   f"(`pip install --force-reinstall --no-deps -e .` makes `tune` ours again)", err=True)
    main(argv, prog_name="trainables")


def main(argv: list[str] | None = None, prog_name: str = "tune") -> None:
    """`tune ARGS` (default: sys.argv): Ray's auth mode first, then the click group. Ctrl-C or SIGTERM
    before a sweep runs (importing, starting Ray) ends the command at once with 130 or 143."""
    from trainables.tune.interrupt import Interrupted, Interrupts

    _ray_auth_from_token()
    # `trainable: mymodule:train` from the folder `tune` runs in, as `python -m trainables` finds it (the console
    # script's path holds only its own folder); Ray puts the driver's folder on its workers' path too
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        with Interrupts():
            cli.main(argv, prog_name=prog_name)
    except Interrupted as e:
        click.echo(f"interrupted ({e.name})", err=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
