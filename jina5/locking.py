"""An exclusive lock on a file that names its holder: ``flock`` + the holder's PID, host and start time.

:class:`HolderLock` takes an exclusive ``flock`` on its file, without waiting (:meth:`HolderLock.try_acquire`)
or waiting for the holder to let go (:meth:`HolderLock.acquire`), and writes the holder's record
``{"pid", "host", "since"}`` into the file, so that a process that finds it taken can say who holds
it (:meth:`HolderLock.holder`, :func:`describe`). The kernel releases the lock when its process dies
(even by SIGKILL): a file still holding a record when taken is the lock of a process that is gone
(:attr:`HolderLock.stale`). Releasing empties the file (nobody holds it) and keeps it, unless asked to
remove it: a process that opened the file just before may then lock the removed file, so the caller
removes a lock file only once whatever it guarded is done, and every holder checks that first.

The locks of this package: a run directory's ``run.lock`` (``jina5.runs.lock``) and the fill locks
of a teacher store (``jina5.teacher.cache``). Where ``fcntl`` does not exist (Windows) there is no
lock: :attr:`HolderLock.supported` is False and every acquire succeeds.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class HolderLock:
    """An exclusive lock on ``path`` (created with its parent directories) that records its holder."""

    supported = fcntl is not None

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.stale: dict = {}  # the record found in the file when taken: a holder that died
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; False (nothing held) if another open file holds it."""
        return self._take(fcntl.LOCK_EX | fcntl.LOCK_NB if self.supported else 0)

    def acquire(self) -> None:
        """Take the lock, waiting as long as another process holds it."""
        self._take(fcntl.LOCK_EX if self.supported else 0)

    def _take(self, flags: int) -> bool:
        if not self.supported:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, flags)
        except OSError:
            os.close(fd)
            return False
        self.stale = read_holder(fd)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return True

    def holder(self) -> dict:
        """The record of the process holding the lock ({} when nobody or an unrecorded process does)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return {}
        try:
            return read_holder(fd)
        finally:
            os.close(fd)

    def release(self, remove: bool = False) -> None:
        """Let go (and, with ``remove``, delete the file first: see the module docstring)."""
        if self._fd is None:
            return
        try:
            if remove:
                self.path.unlink(missing_ok=True)
            else:
                os.ftruncate(self._fd, 0)  # an empty file: nobody holds it
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def read_holder(fd: int) -> dict:
    """The holder's record written in the lock file open as ``fd`` ({} when empty or unreadable)."""
    raw = os.pread(fd, 4096, 0)
    try:
        holder = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {"pid": raw[:40].decode(errors="replace")}
    return holder if isinstance(holder, dict) else {}


def describe(holder: dict) -> str:
    """``process <pid> on <host> (since <time>)``, or what is known of an unrecorded holder."""
    if not holder:
        return "another process (its PID is not recorded yet)"
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')} (since {holder.get('since', '?')})"
