"""The lock of a sweep folder: one `tune run` per sweep at a time (a second one stops at once, naming the
holder; a lock whose holder died is taken over)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from trainables.errors import SpecError
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


class NoLock:
    """Remote storage (s3://, gs://) has no atomic create: there, nothing is locked."""

    def acquire(self, *, file: str | None = None) -> "NoLock":
        return self

    def release(self) -> None:
        pass

    def __enter__(self) -> "NoLock":
        return self

    def __exit__(self, *exc) -> None:
        pass


def lock_for(path: str) -> SweepLock | NoLock:
    return NoLock() if is_remote(path) else SweepLock(path)


def _started(pid: int) -> str | None:
    """A process's start time (Linux /proc): a reused pid is not the lock's holder."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _me() -> dict[str, Any]:
    import socket
    import time

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
