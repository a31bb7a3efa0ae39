"""One live training process per run directory: ``<run dir>/run.lock``.

Two processes training into one directory interleave ``metrics.csv`` and checkpoints, and the one that
finishes last reports a run that never happened. :class:`RunLock` takes an exclusive, non-blocking
``flock`` on ``run.lock`` (``jina5.locking.HolderLock``) and writes the holder's PID, host and start time
into it; a second process is refused with :class:`RunLockedError` naming that PID. The kernel releases
the lock when its process dies (even by SIGKILL), so a lock file left by a dead process is taken over,
with a log line naming the process that left it. The file is kept (emptied) on release: deleting a lock
file races with a process that has just opened it.

Under several ranks only global rank 0 (the process that launches, or rank 0 of a scheduler's launch)
locks. Where ``fcntl`` does not exist (Windows) there is no lock, and a warning says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

from jina5.locking import HolderLock, describe

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run directory's lock (the message names its PID)."""


class RunLock:
    """``with RunLock(run_dir): ...``: hold ``run_dir/run.lock`` for the block (see the module docstring)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.enabled = enabled
        self._lock = HolderLock(self.path)

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
        if not HolderLock.supported:
            log.warning(
                "no run-directory lock on this platform (no fcntl): do not train twice into %s",
                self.path.parent,
            )
            return
        if not self._lock.try_acquire():
            raise RunLockedError(
                f"{self.path.parent} is in use by {describe(self._lock.holder())} (lock file {self.path}); "
                "wait for it to finish or stop it (a finished or killed process releases the lock), or train "
                "into another run dir (run_name=... or paths.output_root=...)"
            )
        if self._lock.stale:
            log.warning(
                "taking over the lock of %s, which is no longer running (%s)",
                describe(self._lock.stale),
                self.path,
            )

    def release(self) -> None:
        self._lock.release()
