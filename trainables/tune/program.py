"""`trainable: program`: a trial runs the user's training script (a W&B sweep's `program`) as a subprocess,
with the wandb stand-in (tune/standin/) first on its import path; each committed `wandb.log` that carries
the metric is one report (one training iteration for the scheduler).

No Ray here: trainable.py hands `run_program` its report function.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from trainables.spec.schema import ENVVAR

STANDIN = str(Path(__file__).parent / "standin")
TAIL = 30  # lines of the program's stderr kept for the error of a failed trial
KILL_WAIT = 1.5  # seconds between SIGTERM and SIGKILL: Tune waits 2 s for a reused actor's trial to end


class ProgramFailed(RuntimeError):
    """The program exited non-zero (or finished its run with an exit code): the trial errored."""


def nested(config: dict[str, Any], blocks: list[str]) -> dict[str, Any]:
    """W&B's nested `parameters:` blocks (flattened to dotted names by spec/wandb.py) as mappings again;
    a dot in any other name stays part of the name."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        node, name = out, str(key)
        for block in sorted((b for b in blocks if name.startswith(b + ".")), key=len, reverse=True)[:1]:
            for part in block.split("."):
                node = node.setdefault(part, {})
            name = name[len(block) + 1:]
        node[name] = value
    return out


def command_line(command: list[str], *, program: str, config: dict[str, Any], config_file: str) -> list[str]:
    """The command with W&B's macros expanded as its agent does: a whole element `${name}` becomes its
    arguments; `${envvar:NAME}` works inside an element. ${interpreter} is this Python (W&B: `python`)."""
    argv: list[str] = []
    for part in command:
        if part == "${env}":
            argv += [] if os.name == "nt" else ["/usr/bin/env"]
        elif part == "${interpreter}":
            argv.append(sys.executable)
        elif part == "${program}":
            argv.append(program)
        elif part == "${args}":
            argv += [f"--{k}={v}" for k, v in config.items()]
        elif part == "${args_no_hyphens}":
            argv += [f"{k}={v}" for k, v in config.items()]
        elif part == "${args_no_equals}":
            argv += [x for k, v in config.items() for x in (f"--{k}", str(v))]
        elif part == "${args_no_boolean_flags}":
            argv += [f"--{k}" if v is True else f"--{k}={v}" for k, v in config.items() if v is not False]
        elif part == "${args_json}":
            argv.append(json.dumps(config))
        elif part == "${args_json_file}":
            argv.append(config_file)
        elif part == "${args_append_hydra}":
            argv += [f"+{k}={v}" for k, v in config.items()]
        elif part == "${args_override_hydra}":
            argv += [f"++{k}={v}" for k, v in config.items()]
        else:
            argv.append(ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), part))
    return argv


def run_program(config: dict[str, Any], *, file: str, command: list[str], metric: str,
                report: Callable[[dict[str, Any]], None], workdir: str, trial_id: str, sweep: str,
                home: str, blocks: list[str] = ()) -> None:
    """Runs the program for one trial; report(metrics) for each committed row that carries the metric
    (with the latest value of every other number logged so far). ProgramFailed on a non-zero exit.
    home: where `tune run` started; the program runs there (as under W&B's agent) when this node has
    it, else in this process's folder (a `ray job submit --working-dir` copy on another node)."""
    cwd = home if Path(home, file).exists() else os.getcwd()
    values = nested(config, list(blocks))
    folder = Path(workdir) / "wandb" / f"sweep-{sweep}"
    folder.mkdir(parents=True, exist_ok=True)
    config_file = str(folder / f"config-{trial_id}.json")
    Path(config_file).write_text(json.dumps(values))
    param_file = folder / f"config-{trial_id}.yaml"  # W&B's form; JSON is YAML
    param_file.write_text(json.dumps({"wandb_version": 1, **{k: {"value": v} for k, v in values.items()}}))
    read_fd, write_fd = os.pipe()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([STANDIN, *filter(None, [os.environ.get("PYTHONPATH")])]),
           "TRAINABLES_WANDB_CONFIG": config_file, "TRAINABLES_WANDB_FD": str(write_fd),
           "WANDB_SWEEP_ID": sweep, "WANDB_RUN_ID": trial_id, "WANDB_DIR": workdir,
           "WANDB_SWEEP_PARAM_PATH": str(param_file), "PYTHONUNBUFFERED": "1"}
    argv = command_line(command, program=file, config=values, config_file=config_file)
    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, pass_fds=(write_fd,), stderr=subprocess.PIPE,
                                start_new_session=True,  # its own group: stopping the trial stops its children
                                preexec_fn=_die_with_parent)
    except OSError as e:
        os.close(read_fd)
        raise ProgramFailed(f"cannot start {' '.join(argv[:4])}: {e.strerror or e}") from None
    finally:
        os.close(write_fd)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL)
    echo = threading.Thread(target=_echo, args=(proc.stderr, tail), daemon=True)
    echo.start()
    finished = 0
    try:
        latest: dict[str, Any] = {}
        with os.fdopen(read_fd, "r") as rows:
            for line in rows:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if "finish" in message:
                    finished = message["finish"] if isinstance(message["finish"], int) else 1
                row = message.get("row")
                if isinstance(row, dict):
                    latest.update(row)
                    if metric in row:
                        report(dict(latest))  # Tune raises SystemExit here when it stops the trial
        code = proc.wait()
    finally:
        _stop(proc)
        echo.join(timeout=5)
    if code != 0 or finished:
        why = f"exited with code {code}" if code != 0 else f"finished its run with exit_code={finished}"
        if code < 0:
            why = f"was killed by signal {signal.Signals(-code).name}" if -code in signal.valid_signals() else why
        raise ProgramFailed(f"{file} {why}; the end of its stderr:\n" + "".join(tail))


def _die_with_parent() -> None:
    """In the child, before exec (Linux): SIGTERM when the trial's process dies, so that a killed Ray
    worker (a trial stopped while its program was silent, the driver gone) leaves no program running."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _echo(stream, tail: collections.deque) -> None:
    """The program's stderr to the trial's (Ray shows it), the last lines kept for the error."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace")
        tail.append(line)
        sys.stderr.write(line)
    stream.close()


def _stop(proc: subprocess.Popen) -> None:
    """The program and its children ended: SIGTERM (as W&B's agent), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=KILL_WAIT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
