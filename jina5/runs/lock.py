"""One live training process per run directory: ``<run dir>/run.lock``.

Two processes training into one directory interleave ``metrics.csv`` and checkpoints, and the one that
finishes last reports a run that never happened. :class:`RunLock` takes an exclusive, non-blocking
``flock`` on ``run.lock`` and writes the holder's PID, host and start time into it; a second process is
refused with :class:`RunLockedError` naming that PID. The kernel releases the lock when its process dies
(even by SIGKILL), so a lock file left by a dead process is taken over, with a log line naming the
process that left it. The file is kept (emptied) on release: deleting a lock file races with a process
that has just opened it.

Under several ranks only global rank 0 (the process that launches, or rank 0 of a scheduler's launch)
locks. Where ``fcntl`` does not exist (Windows) there is no lock, and a warning says so.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run directory's lock (the message names its PID)."""


class RunLock:
    """``with RunLock(run_dir): ...``: hold ``run_dir/run.lock`` for the block (see the module docstring)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.enabled = enabled
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        if not self.enabled:
            return
        if fcntl is None:
            log.warning(
                "no run-directory lock on this platform (no fcntl): do not train twice into %s",
                self.path.parent,
            )
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _describe(_read_holder(fd))
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is in use by {holder} (lock file {self.path}); wait for it to finish or "
                "stop it (a finished or killed process releases the lock), or train into another run dir "
                "(run_name=... or paths.output_root=...)"
            ) from None
        stale = _read_holder(fd)
        if stale:
            log.warning(
                "taking over the lock of %s, which is no longer running (%s)", _describe(stale), self.path
            )
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty file: nobody holds it
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _read_holder(fd: int) -> dict:
    """The holder's record written in the lock file ({} when empty or unreadable)."""
    raw = os.pread(fd, 4096, 0)
    try:
        holder = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {"pid": raw[:40].decode(errors="replace")}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process (its PID is not recorded yet)"
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')} (since {holder.get('since', '?')})"
