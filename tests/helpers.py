"""Small helpers shared by the tests."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tune(*args, cwd: Path):
    """`tune ARGS` in this process (click's CliRunner), from the folder cwd; the click Result."""
    from click.testing import CliRunner

    from trainables.cli import cli

    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, [str(a) for a in args])
    finally:
        os.chdir(old)


def run_cli(*args, cwd=None, env=None, timeout=600, check=None) -> subprocess.CompletedProcess:
    """`python -m trainables ARGS` in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "trainables", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class Payload:
    """Pickles into a command that touches `marker` when it is unpickled: what code in a pickle can do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def recorded_finished(exp: Path) -> set[str]:
    """Trials the sweep's saved state (what --resume reads) records as finished."""
    done = set()
    for f in exp.glob("experiment_state-*.json"):
        try:
            trials = json.loads(f.read_text())["trial_data"]
        except (OSError, ValueError, KeyError):  # being rewritten just now
            continue
        done |= {json.loads(t[0])["trial_id"] for t in trials if json.loads(t[0])["status"] == "TERMINATED"}
    return done
