"""Joining Ray, and what a sweep on more than one node needs: shared storage, an MLflow server."""
from __future__ import annotations

import os
from pathlib import Path

from trainables.errors import SpecError
from trainables.results.layout import storage_root
from trainables.spec.schema import Spec


def connect(address: str | None) -> None:
    """Start a local Ray, or join the cluster at `address` (failing fast if it does not answer)."""
    import logging
    import socket

    import ray

    if ray.is_initialized():
        return
    if address and address not in ("auto", "local") and "://" not in address or (address or "").startswith("ray://"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError) as e:
            raise SpecError(f"the Ray cluster at {address} does not answer ({e}); is `ray start --head` running there?",
                            path="--address") from None
    try:
        ray.init(address=address or None, logging_level=logging.ERROR, log_to_driver=False,
                 include_dashboard=False if not address else None)
    except ConnectionError as e:
        raise SpecError(f"cannot join the Ray cluster at {address}: {e}", path="--address") from None


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
