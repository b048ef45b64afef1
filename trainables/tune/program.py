"""`trainable: program`: a trial runs the user's training script (a W&B sweep's `program`) as a subprocess,
with the wandb stand-in (tune/standin/) first on its import path; each committed `wandb.log` that carries
the metric is one report (one training iteration for the scheduler).

No Ray here: trainable.py hands `run_program` its report function.
"""
from __future__ import annotations

import collections
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from trainables.core.numbers import finite
from trainables.spec.schema import ENVVAR, runs_module

STANDIN = str(Path(__file__).parent / "standin")
CARRIED = 1000  # names of earlier rows carried into each report
TAIL = 30  # lines of the program's stderr kept for the error of a failed trial
LINE_MAX = 4096  # bytes of a stderr line shown and kept; the rest of a longer line is left out
COOKIE = "TRAINABLES_TRIAL_COOKIE"  # in each program's environment: what carries it is the trial's
KILL_WAIT = 1.5  # seconds between SIGTERM and SIGKILL: Tune waits 2 s for a reused actor's trial to end


class ProgramFailed(RuntimeError):
    """The program exited non-zero (or finished its run with an exit code): the trial errored."""


def nested(config: dict[str, Any], paths: dict[str, list[str]]) -> dict[str, Any]:
    """W&B's nested `parameters:` (flattened by spec/wandb.py) as mappings again: each name in `paths` goes to
    its place; every other name stays as it is."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        *parents, last = paths.get(key) or [key]
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


# W&B's argument macros: each parameter -> its arguments (values as Python's str() writes them, as W&B's agent)
PER_PARAMETER: dict[str, Callable[[str, Any], list[str]]] = {
    "${args}": lambda k, v: [f"--{k}={v}"],
    "${args_no_hyphens}": lambda k, v: [f"{k}={v}"],
    "${args_no_equals}": lambda k, v: [f"--{k}", str(v)],
    "${args_no_boolean_flags}": lambda k, v: [] if v is False else [f"--{k}"] if v is True else [f"--{k}={v}"],
    "${args_append_hydra}": lambda k, v: [f"+{k}={v}"],
    "${args_override_hydra}": lambda k, v: [f"++{k}={v}"],
}


def command_line(command: list[str], *, program: str, config: dict[str, Any], config_file: str) -> list[str]:
    """The command with W&B's macros expanded as its agent does: a whole element `${name}` becomes its
    arguments; `${envvar:NAME}` works inside an element. ${interpreter} is this Python (W&B: `python`)."""
    argv: list[str] = []
    for part in command:
        if part in PER_PARAMETER:
            argv += [x for k, v in config.items() for x in PER_PARAMETER[part](k, v)]
        elif part == "${env}":
            argv += [] if os.name == "nt" else ["/usr/bin/env"]
        elif part == "${interpreter}":
            argv.append(sys.executable)
        elif part == "${program}":
            argv.append(program)
        elif part == "${args_json}":
            argv.append(json.dumps(config))
        elif part == "${args_json_file}":
            argv.append(config_file)
        else:
            argv.append(ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), part))
    return argv


def run_program(config: dict[str, Any], *, file: str, command: list[str], metric: str,
                report: Callable[[dict[str, Any]], None], workdir: str, trial_id: str, sweep: str,
                home: str, paths: dict[str, list[str]] | None = None) -> None:
    """Runs the program for one trial; report(metrics) for each committed row that carries the metric
    (with the latest value of every other number logged so far). ProgramFailed on a non-zero exit.
    home: where `tune run` started; the program runs there (as under W&B's agent) when this node has
    it, else in this process's folder (a `ray job submit --working-dir` copy on another node)."""
    uses_file = "${program}" in command and not runs_module(command)
    cwd = home if Path(home).is_dir() and (Path(home, file).exists() or not uses_file) else os.getcwd()
    values = nested(config, paths or {})
    folder = Path(workdir) / "wandb" / f"sweep-{sweep}"
    folder.mkdir(parents=True, exist_ok=True)
    config_file = str(folder / f"config-{trial_id}.json")
    Path(config_file).write_text(json.dumps(values))
    param_file = folder / f"config-{trial_id}.yaml"  # W&B's form; JSON is YAML
    param_file.write_text(json.dumps({"wandb_version": 1, **{k: {"value": v} for k, v in values.items()}}))
    # A named pipe, not an inherited descriptor: a launcher that closes descriptors, or a script that has
    # opened files of its own, cannot turn the stand-in's rows into writes to something else.
    pipe = folder / f"rows-{trial_id}"
    pipe.unlink(missing_ok=True)
    os.mkfifo(pipe)
    rows_fd = os.open(pipe, os.O_RDWR | os.O_NONBLOCK)  # read-write: never blocks, never sees end-of-file
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([STANDIN, *filter(None, [os.environ.get("PYTHONPATH")])]),
           "TRAINABLES_WANDB_CONFIG": config_file, "TRAINABLES_WANDB_PIPE": str(pipe),
           "WANDB_SWEEP_ID": sweep, "WANDB_RUN_ID": trial_id, "WANDB_DIR": workdir,
           "WANDB_SWEEP_PARAM_PATH": str(param_file), "PYTHONUNBUFFERED": "1", COOKIE: uuid.uuid4().hex}
    argv = command_line(command, program=file, config=values, config_file=config_file)
    try:
        proc = subprocess.Popen([sys.executable, "-c", DIE_WITH_PARENT, *argv], env=env, cwd=cwd,
                                stderr=subprocess.PIPE, start_new_session=True)  # stopped as one group
    except OSError as e:
        os.close(rows_fd)
        raise ProgramFailed(f"cannot start {' '.join(argv[:4])}: {e.strerror or e}") from None
    tail: collections.deque[str] = collections.deque(maxlen=TAIL)
    echo = threading.Thread(target=_echo, args=(proc.stderr, tail), daemon=True)
    echo.start()
    state = _Rows(metric, report)
    try:
        while True:
            ready, _, _ = select.select([rows_fd], [], [], 0.2)
            if ready:
                state.feed(_read(rows_fd))
            elif proc.poll() is not None:  # ended: what it wrote last is read above; its children may linger
                state.feed(_read(rows_fd))
                break
        code = proc.wait()
        state.end(clean=code == 0 and not state.finished)
    finally:
        _stop(proc, env[COOKIE])
        os.close(rows_fd)
        pipe.unlink(missing_ok=True)
        echo.join(timeout=5)
    if code != 0 or state.finished:
        why = f"exited with code {code}" if code != 0 else f"finished its run with exit_code={state.finished}"
        if code < 0 and -code in signal.valid_signals():
            why = f"was killed by signal {signal.Signals(-code).name}"
        if code == 127 and not tail:
            why += f" (could not run {' '.join(argv[:3])})"
        raise ProgramFailed(f"{file} {why}; the end of its stderr:\n" + "".join(tail))


# SIGTERM to the program when the trial's process dies (a Ray worker killed while its program was silent,
# the driver gone), set before exec in a small Python of its own: no preexec_fn in a threaded Ray worker.
DIE_WITH_PARENT = ("import ctypes, os, signal, sys\n"
                   "if sys.platform.startswith('linux'): ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"
                   "try: os.execvp(sys.argv[1], sys.argv[1:])\n"
                   "except OSError as e: print(f'cannot run {sys.argv[1]}: {e.strerror}', file=sys.stderr); "
                   "sys.exit(127)\n")


def _read(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


class _Rows:
    """The stand-in's messages -> reports: a committed row carrying a finite metric is one iteration,
    reported with the latest value of every other number (the CARRIED most recently logged names: a script
    logging a new name at each step made each report, and the time to send it, grow without end)."""

    def __init__(self, metric: str, report: Callable[[dict[str, Any]], None]):
        self.metric, self.report = metric, report
        self.latest: dict[str, Any] = {}  # None: logged as inf, no value
        self.summary: dict[str, Any] = {}
        self.reported, self.finished, self.pieces = 0, 0, []

    def feed(self, data: bytes) -> None:
        self.pieces.append(data)
        if b"\n" not in data:
            return  # a line still coming: joined once it is whole (a line of megabytes came in many pieces)
        *lines, rest = b"".join(self.pieces).split(b"\n")
        self.pieces = [rest]
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if "finish" in message:
                self.finished = message["finish"] if isinstance(message["finish"], int) else 1
            if isinstance(message.get("summary"), dict):
                self.summary.update(message["summary"])
            row = message.get("row")
            if isinstance(row, dict):
                for k, v in row.items():  # the newest last: the oldest name is the one let go
                    self.latest.pop(k, None)
                    self.latest[k] = v
                if len(self.latest) > CARRIED:  # the oldest go; never this row's names, nor the metric
                    keep = set(row) | {self.metric}
                    for k in [k for k in self.latest if k not in keep][:len(self.latest) - CARRIED]:
                        del self.latest[k]
                if _finite(row.get(self.metric)):  # as W&B counts iterations: finite numbers only
                    self.reported += 1
                    self.report(_values(self.latest))  # Tune raises SystemExit here when it stops the trial

    def end(self, clean: bool) -> None:
        """At the script's end: a metric it put only in run.summary is reported once; a script that ended well
        without ever logging its metric (another name) reports what it did log, so that the sweep stops
        naming those (MetricCheck). One that logged it only as NaN or inf reports nothing: it diverged."""
        logged = {**self.latest, **self.summary}
        if not self.reported and (_finite(self.summary.get(self.metric)) or (clean and self.metric not in logged)):
            self.reported += 1
            self.report(_values(logged))


def _values(logged: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in logged.items() if v is not None}


def _finite(v: Any) -> bool:
    return finite(v) is not None  # 10**400 too is no value (math.isfinite raised OverflowError)


def _echo(stream, tail: collections.deque) -> None:
    """The program's stderr to the trial's (Ray shows it), the last lines kept for the error."""
    whole = True  # the last piece ended its line
    for raw in iter(lambda: stream.readline(LINE_MAX), b""):  # a line of megabytes comes in pieces
        line = raw.decode("utf-8", errors="replace")
        if whole:
            tail.append(line)
            sys.stderr.write(line if line.endswith("\n") else line + " ... (a longer line, cut)\n")
        whole = line.endswith("\n")
    stream.close()


def _stop(proc: subprocess.Popen, cookie: str) -> None:
    """The program and what it started (its process group, even when the program itself has ended: a
    child left behind would hold its stderr and its GPU) ended: SIGTERM (as W&B's agent), then SIGKILL.
    Then whatever still carries the trial's cookie: a child started in a session of its own (setsid)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_WAIT)
            time.sleep(0.05)  # the group's other members handle their SIGTERM
            os.killpg(proc.pid, signal.SIGKILL)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    except ProcessLookupError:
        pass  # nothing of the group left
    for pid in _carrying(cookie):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _carrying(cookie: str) -> list[int]:
    """The processes whose environment holds this trial's cookie (Linux's /proc; none elsewhere): a
    process tree killer's way (Jenkins' BUILD_ID), for what left the program's process group."""
    needle = f"{COOKIE}={cookie}".encode()
    found = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else []:
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.append(int(entry.name))
            except OSError:
                continue  # gone, or another user's
    return found
