"""Small helpers shared by the tests."""
from __future__ import annotations

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
