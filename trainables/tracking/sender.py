"""The sender: one thread that delivers MLflow operations in order, retried until they arrive."""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Callable

from trainables.tracking.server import reason

# MLflow error codes that no retry will fix: the operation is dropped with a warning.
PERMANENT = frozenset({
    "BAD_REQUEST", "INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST", "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS", "INVALID_STATE", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
    "UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED", "FEATURE_DISABLED", "ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED",
})


def _is_transient(e: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    if isinstance(e, MlflowException):
        return e.error_code not in PERMANENT
    if isinstance(e, (PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError)):
        return False  # a local artifact store that cannot be written: no retry fixes it (each held the queue ~35 s)
    return (isinstance(e, (OSError, TimeoutError))
            or type(e).__module__.split(".")[0] in ("requests", "urllib3", "sqlalchemy"))


@dataclass
class _Op:
    what: str
    fn: Callable[[], None]
    attempts: int = 0


class Sender:
    """Runs queued operations in order on one thread. A failed operation stays at the head and
    is retried with backoff (a tracking server that went away holds the queue until it is back);
    an error no retry can fix drops it with a warning. Never raises to the caller."""

    MAX_DELAY = 10.0

    def __init__(self, say: Callable[[str], None], uri: str, healthy: Callable[[], bool]):
        self._say, self._uri, self._healthy = say, uri, healthy
        self._ops: collections.deque[_Op] = collections.deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self.failing_since: float | None = None
        self.dropped = 0
        self.sent = 0

    def submit(self, what: str, fn: Callable[[], None]) -> None:
        with self._cv:
            self._ops.append(_Op(what, fn))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mlflow-sender", daemon=True)
                self._thread.start()
            self._cv.notify_all()

    def pending(self) -> int:
        with self._cv:
            return len(self._ops)

    def drain(self, timeout: float) -> bool:
        """Wait until every queued operation has been sent (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._ops:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 1.0))
        return True

    def _run(self) -> None:
        delay = 0.5
        while True:
            with self._cv:
                while not self._ops:
                    self._cv.wait()
                op = self._ops[0]
            try:
                op.attempts += 1
                op.fn()
            except Exception as e:  # noqa: BLE001 - a tracking fault must never end the sweep
                # Dropped when no retry can fix it, or when the server answers but keeps refusing it.
                if not _is_transient(e) or (op.attempts >= 8 and self._healthy()):
                    self._say(f"MLflow refused {op.what}: {reason(e)} (not retried)")
                    self.dropped += 1
                    self._pop()
                    continue
                if self.failing_since is None:
                    self.failing_since = time.time()
                    self._say(f"MLflow at {self._uri} did not take {op.what} ({reason(e)}); training goes on, "
                              f"{self.pending()} operation(s) kept and retried until it answers")
                time.sleep(delay)
                delay = min(delay * 2, self.MAX_DELAY)
                continue
            self.sent += 1
            if self.failing_since is not None:
                self._say(f"MLflow at {self._uri} answers again after {time.time() - self.failing_since:.0f}s; "
                          f"sending the {self.pending() - 1} operation(s) kept meanwhile")
                self.failing_since = None
            delay = 0.5
            self._pop()

    def _pop(self) -> None:
        with self._cv:
            self._ops.popleft()
            self._cv.notify_all()
