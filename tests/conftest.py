"""Shared test set-up: one real Ray head per test session, started only when a test needs Ray.

Every `ray.init()` in the session (in-process or in a `tune` subprocess) joins it through
RAY_ADDRESS, so the suite pays Ray's start-up once.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

# Token auth is Ray's default for a `ray start` head, and Ray reads the mode once, at import:
# set it before any test module imports ray, so in-process drivers can join the session head.
os.environ.setdefault("RAY_AUTH_MODE", "token")
# Image folders' decoded caches (dataset.cache) go to a folder of this session's, not the machine's
# temporary directory, for every process the tests start (Ray's workers inherit it from the head).
if "TRAINABLES_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["TRAINABLES_CACHE_DIR"] = tempfile.mkdtemp(prefix="trainables-test-cache-")

import pytest

from tests.helpers import ROOT, free_port
from trainables.tune.cluster import ensure_token


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory):
    """host:port of a Ray head (2 CPUs) for this session; RAY_ADDRESS points at it."""
    port = free_port()
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray's default for local clusters; clients must match
    ensure_token()  # a machine that never ran Ray has none, and `ray start` makes none
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    log = open(tmp_path_factory.mktemp("ray") / "head.log", "w")
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:  # the head is up once its GCS port accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if head.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray head did not start; see {log.name}") from None
            time.sleep(0.2)
    old = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = address
    yield address
    import ray

    if ray.is_initialized():
        ray.shutdown()
    head.terminate()  # `ray start --block` takes its processes down with it
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        head.kill()
    if old is None:
        os.environ.pop("RAY_ADDRESS", None)
    else:
        os.environ["RAY_ADDRESS"] = old


@pytest.fixture
def ray_session(ray_address):
    """This process connected to the session's Ray head."""
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
    return ray_address


@pytest.fixture(scope="module")
def tune_in_process(ray_address):
    """`tune ARGS` run in this process (click's CliRunner), joined once to the session's Ray
    head: a test pays for its sweep, not for starting Python, importing torch and connecting
    again. Returns run(*args, cwd, check=0) -> output. The module's driver leaves at its end."""
    import traceback

    import ray
    from click.testing import CliRunner

    from trainables.cli import cli

    ray.init(address=ray_address, log_to_driver=False)

    def run(*args, cwd: Path, check: int | None = 0) -> str:
        old = Path.cwd()
        os.chdir(cwd)
        try:
            result = CliRunner().invoke(cli, [str(a) for a in args])
        finally:
            os.chdir(old)
        crash = "".join(traceback.format_exception(result.exception)) if result.exception and \
            not isinstance(result.exception, SystemExit) else ""
        assert check is None or result.exit_code == check, \
            f"tune {' '.join(map(str, args))}: exit {result.exit_code}\n{result.output}{crash}"
        return result.output

    yield run
    ray.shutdown()
