"""The stand-in's channel to its trial: messages as JSON lines on the trial's named pipe, and the numbers
of a log. Only the standard library: it runs in the user's program."""
from __future__ import annotations

import json
import math
import os
import stat
import threading
from collections.abc import Mapping

_OUT = os.environ.get("TRAINABLES_WANDB_PIPE")  # the trial's named pipe: committed rows go there, one JSON line each
_fd: int | None = None
_pipe: tuple[int, int] | None = None  # (device, inode) of the pipe: a descriptor number reused is not it
_lock = threading.Lock()


def _open() -> None:
    """The trial's pipe; nothing outside a trial (the script run by hand): then every call is harmless."""
    global _fd, _pipe
    try:
        st = os.stat(_OUT) if _OUT else None
        if st is not None and stat.S_ISFIFO(st.st_mode):
            _fd, _pipe = os.open(_OUT, os.O_WRONLY), (st.st_dev, st.st_ino)
    except OSError:
        _fd = None


def _still_the_pipe() -> bool:
    try:
        st = os.fstat(_fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == _pipe


def send(message: dict) -> None:
    """One JSON line to the trial. The pipe is opened at the first message (after whatever the script did
    to its descriptors), and again when its descriptor is no longer the pipe: the script closed it, or
    closed it and opened a file of its own under its number (rows went into that file)."""
    global _fd
    data = (json.dumps(message, default=str) + "\n").encode()
    with _lock:  # threads of the script: one line at a time
        if _fd is not None and not _still_the_pipe():
            _fd = None  # not closed here: the number may be the script's own file now
        if _fd is None:
            _open()
            if _fd is None:
                return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(_fd, view):]
        except OSError:
            _fd = None


def numbers(d: Mapping, prefix: str = "") -> dict:
    """The numeric values of a (nested) log, flat names joined by '.'; images, tables, text and bools
    (numpy's and torch's too: W&B counts none as a value of a metric) left out; inf as None: logged, but
    no value."""
    out: dict = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(numbers(v, name + "."))
        elif isinstance(v, bool) or type(v).__name__ == "bool_" or "bool" in str(getattr(v, "dtype", "")):
            continue
        elif isinstance(v, (int, float)):
            out[name] = v
        elif hasattr(v, "__float__") and not isinstance(v, str):  # numpy and torch scalars
            try:
                out[name] = float(v)
            except (TypeError, ValueError):  # an array of several values: not a metric
                continue
    return {k: None if isinstance(v, float) and math.isinf(v) else v for k, v in out.items()}
