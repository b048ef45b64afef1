"""The lock of a sweep folder: one `tune run` per sweep at a time (a second one stops at once, naming the
holder; a lock whose holder died is taken over)."""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from trainables.core.numbers import finite
from trainables.errors import SpecError, redact
from trainables.results import storage
from trainables.results.layout import read_json
from trainables.results.storage import is_remote


class SweepLock:
    """<storage>/.<name>.lock, taken before Ray starts and held to the end of `tune run`: a second
    run of the same sweep stops at once, naming the holder. A lock whose process is gone (on this
    host) is taken over. Beside the sweep folder, not in it: a new sweep's folder stays empty."""

    def __init__(self, path: str):
        self.file = Path(path).parent / f".{Path(path).name}.lock"
        self.name = Path(path).name
        self.held = False
        self.created: Path | None = None
        self.me: dict[str, Any] = {}

    def acquire(self, *, file: str | None = None) -> "SweepLock":
        missing = self.file.parent
        while not missing.parent.exists() and missing != missing.parent:
            missing = missing.parent
        self.created = None if missing.exists() else missing  # removed again if the run leaves it empty
        self.file.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_json(self.file)
                if _alive(holder):
                    h = holder if isinstance(holder, dict) else {}
                    raise SpecError(f"the sweep {self.name!r} is being run by another `tune run` (pid {h.get('pid')} "
                                    f"on {h.get('host')}, since {h.get('since', '?')}); wait for it to end, or "
                                    f"remove {self.file} if that process is gone", file=file) from None
                self.file.unlink(missing_ok=True)  # stale: its process is gone
                continue
            self.me = _me()
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
            self.held = True
            return self
        raise SpecError(f"cannot take the lock {self.file}: another run took it first", file=file)

    def release(self) -> None:
        if self.held and read_json(self.file) == self.me:
            self.file.unlink(missing_ok=True)
            for folder in [self.file.parent, *self.file.parent.parents] if self.created else []:
                try:
                    folder.rmdir()  # only if empty: a failed start leaves no folder behind
                except OSError:
                    break
                if folder == self.created:
                    break
        self.held = False

    def __enter__(self) -> "SweepLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class RemoteLock:
    """The same lock on remote storage (s3://, gs://), which has no atomic create: written, then read back a
    moment later (of two runs started within that moment, the one whose lock stayed goes on). The holder
    writes it again every BEAT seconds; one not written for STALE seconds, or whose process on this host is
    gone, is taken over."""

    BEAT, STALE, SETTLE = 60.0, 600.0, 1.0

    def __init__(self, path: str):
        head, sep, query = path.partition("?")  # a query (?endpoint_override=) stays at the end
        parent, _, self.name = head.rstrip("/").rpartition("/")
        self.file = f"{parent}/.{self.name}.lock{sep}{query}"
        self.me: dict[str, Any] = {}
        self._stop = threading.Event()
        self._beats: threading.Thread | None = None

    def _holder(self) -> dict[str, Any]:
        try:
            holder = json.loads(storage.read_text(self.file) or "null")
        except (ValueError, RecursionError):
            return {}  # cut short: not a holder
        return holder if isinstance(holder, dict) else {}

    def acquire(self, *, file: str | None = None) -> "RemoteLock":
        holder = self._holder()
        age = time.time() - (finite(holder.get("beat")) or 0.0)
        if holder and age < self.STALE and _alive(holder):
            raise SpecError(f"the sweep {self.name!r} is being run by another `tune run` (pid {holder.get('pid')} on "
                            f"{holder.get('host')}, since {holder.get('since', '?')}; its lock was renewed "
                            f"{max(age, 0):.0f}s ago); wait for it to end, or remove {redact(self.file)} if that run "
                            f"is gone", file=file)
        self.me = {**_me(), "token": uuid.uuid4().hex, "beat": time.time()}
        storage.write_text(self.file, json.dumps(self.me))
        time.sleep(self.SETTLE)
        if self._holder().get("token") != self.me["token"]:
            raise SpecError(f"cannot take the lock {redact(self.file)}: another run took it first", file=file)
        self._beats = threading.Thread(target=self._beat, daemon=True, name="sweep-lock")
        self._beats.start()
        return self

    def _beat(self) -> None:
        failing, warned = 0.0, False
        while not self._stop.wait(self.BEAT):
            try:
                if self._holder().get("token") != self.me["token"]:  # taken over while the storage was away
                    print(f"warning: the lock {redact(self.file)} was taken over by another run (the storage did "
                          f"not answer for {self.STALE:.0f}s?); two runs of sweep {self.name!r} may be writing it",
                          file=sys.stderr, flush=True)
                    return
                storage.write_text(self.file, json.dumps({**self.me, "beat": time.time()}))
                failing, warned = 0.0, False
            except SpecError:
                failing += self.BEAT  # the storage away a moment: the next beat
                if failing >= self.STALE / 2 and not warned:
                    warned = True
                    print(f"warning: the lock {redact(self.file)} could not be renewed for {failing:.0f}s; after "
                          f"{self.STALE:.0f}s another run may take it over", file=sys.stderr, flush=True)

    def release(self) -> None:
        self._stop.set()
        if self._beats is not None:
            self._beats.join(timeout=30)
            self._beats = None
            try:
                if self._holder().get("token") == self.me.get("token"):
                    storage.remove(self.file)
            except SpecError:
                pass  # left behind: the next run takes it over once it is stale

    def __enter__(self) -> "RemoteLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_for(path: str) -> SweepLock | RemoteLock:
    return RemoteLock(path) if is_remote(path) else SweepLock(path)


def _started(pid: int) -> str | None:
    """A process's start time (Linux /proc): a reused pid is not the lock's holder."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _me() -> dict[str, Any]:
    import socket

    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "started": _started(pid),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def _alive(holder: Any) -> bool:
    """Whether the lock's holder still runs. Another host's process cannot be checked: assumed alive."""
    import socket

    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
        return False  # unreadable: a lock cut short by a crash
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return holder.get("started") is None or _started(holder["pid"]) == holder.get("started")
