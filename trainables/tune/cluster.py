"""Joining Ray, and what a sweep on more than one node needs: shared storage, an MLflow server."""
from __future__ import annotations

import os
from pathlib import Path

from trainables.errors import SpecError, env_seconds, short
from trainables.results.layout import storage_root
from trainables.spec.schema import Spec


def _answers(address: str, timeout: float = 5.0) -> str | None:
    """None if something listens at host:port, else why not."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
        return None
    except (OSError, ValueError) as e:
        return str(e) or type(e).__name__


def connect(address: str | None, *, say=print) -> None:
    """Start a local Ray, or join the cluster at `address` (failing fast if it does not answer).

    Without an address Ray joins the cluster its address file names (the last `ray start` on this
    machine); a file left by a head that died would make it wait for minutes, so that address is
    probed first, and a local Ray is started in its place when it does not answer."""
    import logging

    import ray

    from trainables.tune import _ray_private

    if ray.is_initialized():
        return
    if address is None and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]  # what ray.init would join: probed like --address
    if address in (None, "auto"):
        recorded = _ray_private.recorded_address()
        if recorded and _answers(recorded, timeout=2.0) is not None:
            if address == "auto":
                raise SpecError(f"--address auto: the last `ray start` on this machine ({recorded}, in "
                                f"{_ray_private.address_file()}) no longer answers; start the cluster again "
                                f"(`ray start --head`), or run without --address for a local Ray", path="--address")
            say(f"ray: the last `ray start` on this machine ({recorded}) no longer answers (its address file "
                f"{_ray_private.address_file()} is stale; `ray stop` removes it): starting a local Ray instead")
            address = "local"
    elif address.split("://")[0].lower() in ("http", "https"):
        raise SpecError(f"{address} is a dashboard's address (what `ray job submit --address` takes); `tune run "
                        f"--address` (and RAY_ADDRESS) take the cluster's: HOST:6379, or ray://HOST:10001",
                        path="--address")
    elif "://" in address and not address.startswith("ray://") and not _client_module(address):
        raise SpecError(f"{address}: Ray knows no {address.split('://')[0]}:// address; `tune run --address` (and "
                        f"RAY_ADDRESS) take HOST:6379, ray://HOST:10001, auto or local", path="--address")
    elif address != "local" and ("://" not in address or address.startswith("ray://")):
        why = _answers(address)
        if why is not None:
            raise SpecError(f"the Ray cluster at {address} does not answer ({why}); is `ray start --head` running "
                            f"there?", path="--address")
    try:
        ray.init(address=address or None, logging_level=logging.ERROR, log_to_driver=False,
                 include_dashboard=False if address in (None, "local") else None)
    except (ConnectionError, RuntimeError, ValueError) as e:  # ValueError: an address Ray cannot parse
        raise SpecError(f"cannot join the Ray cluster at {address}: {short(str(e), 300)}{_AUTH_HINT}",
                        path="--address") from None
    if address not in (None, "local"):
        _probe(address)


def _client_module(address: str) -> bool:
    """Whether the address's scheme names a module Ray can join through (ray.init imports it: anyscale://)."""
    import importlib.util

    scheme = address.split("://")[0]
    try:
        return bool(all(part.isidentifier() for part in scheme.split(".")) and importlib.util.find_spec(scheme))
    except (ImportError, ValueError):
        return False


_AUTH_HINT = (" (a cluster started with `ray start` uses token auth: RAY_AUTH_MODE and the token, ~/.ray/auth_token "
              "or $RAY_AUTH_TOKEN, must match the cluster's)")


def _probe(address: str) -> None:
    """One task on the cluster just joined: a client whose auth mode or token does not match the
    cluster's joins it, but every task and actor it starts is cancelled, so every trial would fail."""
    import ray

    @ray.remote(num_cpus=0, max_retries=0)
    def ping() -> int:
        return 1

    timeout = env_seconds("TRAINABLES_PROBE_TIMEOUT")
    try:
        ray.get(ping.remote(), timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise SpecError(f"the Ray cluster at {address} ran no task in {timeout:.0f}s{_AUTH_HINT}",
                        path="--address") from None
    except ray.exceptions.RayError as e:
        raise SpecError(f"the Ray cluster at {address} refused a task ({short(str(e).splitlines()[0], 200)})"
                        f"{_AUTH_HINT}", path="--address") from None


def ensure_token() -> None:
    """Before `ray start --head` under token auth (Ray's default): make the token a new local `ray.init()`
    would make (~/.ray/auth_token) when none exists. `ray start` makes none: on a machine that never ran
    Ray it refused to start."""
    import subprocess
    import sys

    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token" or os.environ.get("RAY_AUTH_TOKEN"):
        return
    if os.path.isfile(os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")):
        return
    # Ray's own command, which writes a token only where none is; its output (the token) is not shown
    try:
        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "get-auth-token", "--generate"],
                       capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError):
        pass  # then `ray start` says what is missing, in Ray's words


def check_resources(spec: Spec) -> None:
    """A trial that asks for more than any node of a fixed-size cluster (or this machine) has: SpecError
    naming resources.cpu / resources.gpu and what exists. An autoscaling cluster (TRAINABLES_CLUSTER=1)
    may add nodes: there the sweep waits (callbacks.WaitingForResources says so)."""
    import ray

    if os.environ.get("TRAINABLES_CLUSTER") == "1":
        return
    r = spec.resources
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most_cpu = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    most_gpu = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    where = "this machine's Ray" if len(nodes) <= 1 else f"the largest of the cluster's {len(nodes)} nodes"
    if r.cpu > most_cpu:
        raise SpecError(f"a trial asks for {r.cpu:g} CPUs; {where} has {most_cpu:g}: lower resources.cpu "
                        f"(trials run side by side when they fit)", file=spec.source, path="resources.cpu")
    if r.gpu > most_gpu:
        has = f"{most_gpu:g} GPUs" if most_gpu else "no GPU"
        raise SpecError(f"a trial asks for {r.gpu:g} GPU{'s' if r.gpu != 1 else ''}; {where} has {has}: set "
                        f"resources.gpu: 0, or run on a machine or cluster with GPUs", file=spec.source,
                        path="resources.gpu")
    total_cpu = sum(n.get("CPU", 0.0) for n in nodes)
    if r.workers > 1 and r.cpu * r.workers > total_cpu:
        raise SpecError(f"a data-parallel trial asks for {r.workers} workers x {r.cpu:g} CPUs; the cluster has "
                        f"{total_cpu:g} CPUs in all", file=spec.source, path="resources.workers")


# Filesystems every node of a cluster can mount at the same path (from /proc/mounts).
SHARED_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "cephfs",
                                "glusterfs", "fuse.glusterfs", "fuse.cephfs", "fuse.gcsfuse", "fuse.s3fs",
                                "fuse.juicefs",
                                "fuse.mountpoint-s3", "efs", "virtiofs"})


def on_cluster() -> int:
    """The alive nodes of the Ray cluster this process is connected to; with TRAINABLES_CLUSTER=1
    (the cluster files set it) at least 2: an autoscaling cluster may have only its head yet."""
    import ray

    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return max(nodes, 2) if os.environ.get("TRAINABLES_CLUSTER") == "1" else nodes


def _filesystem_type(path: str) -> str | None:
    """The type of the filesystem holding path (its nearest existing ancestor), from /proc/mounts."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    best, kind = "", None
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (str(p) == mount or str(p).startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
            best, kind = mount, parts[2]
    return kind


def storage_is_shared(storage: str | None) -> bool:
    """Whether every node sees the sweep's storage: a URI (s3://, gs://, ... but not file://), a
    path on a network filesystem (SHARED_FILESYSTEMS), or a path given explicitly (--storage or
    TRAINABLES_STORAGE) and declared shared with TRAINABLES_SHARED_STORAGE=1."""
    root = storage_root(storage)
    if "://" in root:
        return not root.startswith("file://")
    explicit = bool(storage or os.environ.get("TRAINABLES_STORAGE"))
    if explicit and os.environ.get("TRAINABLES_SHARED_STORAGE") == "1":
        return True
    return _filesystem_type(root) in SHARED_FILESYSTEMS


def check_cluster(spec: Spec, storage: str | None) -> None:
    """On more than one node (see on_cluster), before any trial starts: trial storage must be
    shared by every node, and MLflow (when tracking) a server, not a file on this machine."""
    nodes = on_cluster()
    if nodes < 2:
        return
    declared = os.environ.get("TRAINABLES_CLUSTER") == "1"
    where = "a Ray cluster (TRAINABLES_CLUSTER=1)" if declared else f"a Ray cluster of {nodes} nodes"
    if not storage_is_shared(storage):
        raise SpecError(
            f"on {where}, trials run on several machines and each must read and write the sweep's storage, "
            f"but {storage_root(storage)} is local to this machine. Pass --storage s3://BUCKET/PATH, gs://BUCKET/PATH "
            f"or a path on a shared filesystem (NFS, ...) mounted on every node; a path every node mounts that is not "
            f"recognised as one can be declared with TRAINABLES_SHARED_STORAGE=1 and an explicit --storage PATH",
            file=spec.source, path="--storage")
    if spec.tracking.enabled:
        uri = spec.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if scheme in ("", "file", "sqlite"):
            raise SpecError(
                f"on {where}, MLflow needs a tracking server that outlives this machine, but {uri} is a local file. "
                f"Set tracking.uri: http://HOST:5000 (or MLFLOW_TRACKING_URI), or tracking.enabled: false",
                file=spec.source, path="tracking.uri")
