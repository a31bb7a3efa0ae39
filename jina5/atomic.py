"""Atomic file and folder writes: a reader sees the old file (folder) or the whole new one, never a part.

    write to ``.<name>.<random>.tmp`` in the same directory -> flush + fsync -> rename over ``path``
    -> fsync the directory (the rename survives a power cut)

The temp file is removed when the write fails; its random suffix lets several processes (ranks, parallel
sweep jobs) write the same path at once, the last rename winning.

A folder (:func:`atomic_dir`) is written into a staging folder ``.<name>.<random>.partial/`` beside it,
held under an exclusive ``flock`` while it is written::

    stage/new/ <- every file, fsynced -> rename path -> stage/old/ -> rename stage/new/ -> path -> remove stage

A writer killed at any point leaves its staging folder and nothing else; the next write of ``path``
removes every staging folder whose ``flock`` it can take (its writer is dead; a live writer's is kept).
Between the two renames ``path`` is briefly absent, never half-written.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
STAGE_SUFFIX = ".partial"  # .<name>.<random>.partial/: a folder being written by atomic_dir


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """``with atomic_file(path) as fh: ...`` writes ``path`` (binary) atomically; parent dirs are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_file(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _stages(path: Path) -> list[Path]:
    """The staging folders of ``path`` in its parent: ``.<name>.<random>.partial/``."""
    return sorted(p for p in path.parent.glob(f".{path.name}.*{STAGE_SUFFIX}") if p.is_dir())


def _try_lock(directory: Path) -> int | None:
    """An fd holding an exclusive ``flock`` on ``directory``, or None if another process holds one."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def remove_dead_stages(path: str | Path) -> list[Path]:
    """Remove the staging folders that killed writers of ``path`` left (those whose lock is free); the
    removed ones. Without ``flock`` (Windows) none is removed: a live writer cannot be told apart."""
    removed = []
    for stage in _stages(Path(path)) if fcntl is not None else []:
        try:
            fd = _try_lock(stage)
        except FileNotFoundError:  # its writer finished meanwhile
            continue
        if fd is None:
            continue
        try:
            shutil.rmtree(stage, ignore_errors=True)
        finally:
            os.close(fd)
        log.info("removed %s, left by a writer of %s that was killed", stage, path)
        removed.append(stage)
    return removed


def _fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every folder (deepest first), so a rename exposes data on disk."""
    folders = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        folders += [Path(dirpath) / d for d in dirnames]
        for name in filenames:
            fd = os.open(Path(dirpath) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for folder in reversed(folders):
        fsync_dir(folder)


def _new_stage(path: Path) -> tuple[Path, int | None]:
    """A new staging folder for ``path``, and the fd holding its lock (None without ``flock``). A folder
    that another writer's :func:`remove_dead_stages` locked or removed before this one could is dropped."""
    while True:
        stage = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}{STAGE_SUFFIX}"
        stage.mkdir()
        if fcntl is None:
            return stage, None
        try:
            lock = _try_lock(stage)
        except FileNotFoundError:
            continue
        if lock is not None:
            return stage, lock


@contextmanager
def atomic_dir(path: str | Path, foreign: Callable[[Path, Path], list[str]] | None = None) -> Iterator[Path]:
    """``with atomic_dir(path) as tmp: <write the folder into tmp>`` replaces ``path`` by ``tmp`` whole
    (module docstring); parent dirs are made, dead writers' staging folders removed first.

    An existing ``path`` is replaced only when ``foreign(path, tmp)`` (the entries of ``path`` that the
    new folder may not replace; default none) is empty; otherwise FileExistsError names them and
    ``path`` is kept. A failed write removes its staging folder and leaves ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_stages(path)
    stage, lock = _new_stage(path)
    try:
        new = stage / "new"
        new.mkdir()
        yield new
        _fsync_tree(new)
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise FileExistsError(f"{path} exists and is not a folder; remove it or write elsewhere")
        if path.exists():
            kept = foreign(path, new) if foreign is not None else []
            if kept:
                raise FileExistsError(
                    f"{path} holds {', '.join(sorted(kept))}, which this write does not produce; it was "
                    f"left as it was. Remove {'them' if len(kept) > 1 else 'it'} from {path}, or write to "
                    "another folder"
                )
            with suppress(FileNotFoundError):  # another writer is between its two renames
                os.rename(path, stage / "old")
        os.rename(new, path)
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # the replaced folder, or a failed write's files
        if lock is not None:
            os.close(lock)
