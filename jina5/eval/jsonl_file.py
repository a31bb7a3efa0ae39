"""An append-only JSON-lines file shared by processes (the results store's ``results.jsonl`` and its
``results.runs.jsonl`` sidecar: ``jina5.eval.store``).

Appends are whole lines: each call writes its batch of lines in one ``write`` (looping only on a
short write) with O_APPEND, then ``fsync``s, holding an exclusive ``flock`` on the file; a failed
write (e.g. a full disk) truncates the file back to where the batch began. Readers hold a shared
``flock``, so they never see a half-written batch. A crash can still leave a torn final line (no
trailing newline, not JSON): the next append or read quarantines it (the first to get the lock):
its bytes are appended to the side file ``<name>.torn`` (a header line names the time, the line and
the byte offset; never overwritten), the file is truncated to the end of its last complete line, and
a warning names ``file:line`` and the side file. A read that cannot write the file (read-only) skips
the torn line with that warning instead. A final line that is valid JSON but lacks its newline (a
hand edit) is a complete record: it is kept and the next append writes the missing newline first. A
complete (newline-terminated) line that is not a valid record raises naming ``file:line``. No
complete line is ever dropped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

TORN_SUFFIX = ".torn"  # results.jsonl -> results.jsonl.torn: quarantined torn final lines
_CHUNK = 1 << 16  # bytes per read when scanning the file for newlines

log = logging.getLogger(__name__)


def torn_path_for(path: Path) -> Path:
    """The side file that torn final lines of ``path`` are quarantined to: ``<name>.torn``."""
    return path.with_name(path.name + TORN_SUFFIX)


@contextmanager
def _flocked(fd: int, exclusive: bool) -> Iterator[None]:
    """``flock`` on ``fd`` (exclusive or shared) for the ``with`` block (no lock without ``fcntl``)."""
    if fcntl is None:  # Windows: one writer at a time is the user's to ensure
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _pread_all(fd: int, start: int, stop: int) -> bytes:
    """Bytes ``[start, stop)`` of the file ``fd``."""
    parts = []
    while start < stop:
        chunk = os.pread(fd, min(stop - start, _CHUNK), start)
        if not chunk:
            break
        parts.append(chunk)
        start += len(chunk)
    return b"".join(parts)


def _last_line_start(fd: int, size: int) -> int:
    """Offset just past the last ``\\n`` among the file's first ``size`` bytes (0 if none)."""
    end = size
    while end > 0:
        begin = max(0, end - _CHUNK)
        at = os.pread(fd, end - begin, begin).rfind(b"\n")
        if at >= 0:
            return begin + at + 1
        end = begin
    return 0


def _line_number(fd: int, offset: int) -> int:
    """1-based number of the line starting at ``offset`` (1 + the newlines before it)."""
    count, pos = 0, 0
    while pos < offset:
        chunk = os.pread(fd, min(_CHUNK, offset - pos), pos)
        if not chunk:
            break
        count += chunk.count(b"\n")
        pos += len(chunk)
    return count + 1


def _is_complete(raw: bytes) -> bool:
    """Whether an unterminated final line is a complete record: valid JSON in UTF-8 (or blank)."""
    try:
        text = raw.decode("utf-8")
        if text.strip():
            json.loads(text)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False
    return True


def _quarantine(fd: int, path: Path, start: int, tail: bytes) -> None:
    """Move the torn final line ``tail`` (bytes ``start..``) of ``path`` to its side file and truncate
    ``path`` at ``start``. The side file is written and synced first: a crash in between leaves the
    tail in both places, never in neither."""
    lineno = _line_number(fd, start)
    side = torn_path_for(path)
    stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    header = f"# {stamp} torn final line {lineno} of {path.name}, bytes {start}..{start + len(tail)}:\n"
    side_fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _write_all(side_fd, header.encode() + tail + b"\n")
        os.fsync(side_fd)
    finally:
        os.close(side_fd)
    os.ftruncate(fd, start)
    os.fsync(fd)
    log.warning(
        "%s:%d: torn final line (%d bytes, no newline, not JSON) moved to %s; the file now ends at its "
        "last complete line",
        path,
        lineno,
        len(tail),
        side,
    )


def _repair_tail(fd: int, path: Path) -> bytes:
    """Make ``path`` (open as ``fd`` read-write, exclusively locked by the caller) end in a complete
    line. Returns the bytes to write before the next line: ``b"\\n"`` if the last line is a complete
    record without its newline, else ``b""`` (ends in a newline, or empty, or its torn last line was
    just quarantined by :func:`_quarantine`)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return b""
    start = _last_line_start(fd, size)
    tail = _pread_all(fd, start, size)
    if _is_complete(tail):
        return b"\n"
    _quarantine(fd, path, start, tail)
    return b""


def _write_all(fd: int, data: bytes) -> None:
    """``data`` in one ``write``; loop only on a (rare) short write."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def append_lines(path: Path, lines: list[dict]) -> None:
    """Append JSON lines in one ``write`` under an exclusive ``flock``, then ``fsync``; a torn final
    line is quarantined first (:func:`_repair_tail`); a failed write truncates back to the old end."""
    data = b"".join((json.dumps(line, default=str) + "\n").encode() for line in lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        with _flocked(fd, exclusive=True):
            data = _repair_tail(fd, path) + data
            end = os.fstat(fd).st_size
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except BaseException:
                # whole lines or nothing: drop what was written of the batch (if this fails too, the
                # next append or read quarantines the torn line)
                with suppress(OSError):
                    os.ftruncate(fd, end)
                raise
    finally:
        os.close(fd)


def _quarantine_on_read(path: Path, lineno: int) -> None:
    """A read found a torn final line (number ``lineno``): quarantine it under an exclusive lock
    (re-checked there: another process may have done it), or, if the file or its side file cannot be
    written (a read-only store), warn that it is skipped."""
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            with _flocked(fd, exclusive=True):
                _repair_tail(fd, path)
        finally:
            os.close(fd)
    except OSError as e:
        log.warning(
            "%s:%d: torn final line (no newline, not JSON) skipped; cannot quarantine it to %s (%s); "
            "the next append will",
            path,
            lineno,
            torn_path_for(path),
            e,
        )


def read_lines(
    path: Path, what: str, required: tuple[str, ...], check: Callable[[dict], str | None] | None = None
) -> list[dict]:
    """Parse a JSON-lines file (under a shared ``flock``). A torn final line (no newline, not JSON)
    is quarantined (:func:`_quarantine_on_read`) and skipped; any other bad line raises naming
    ``path:line``: not JSON, not an object, a ``required`` field missing, or what ``check(row)`` finds
    wrong in it (a message, None for a good row)."""
    if not path.exists():
        return []
    with path.open("rb") as f, _flocked(f.fileno(), exclusive=False):
        data = f.read()
    raw_lines = data.split(b"\n")
    tail = raw_lines.pop()  # b"" when the file ends in a newline
    if _is_complete(tail):
        raw_lines.append(tail)
    else:
        _quarantine_on_read(path, len(raw_lines) + 1)
    rows = []
    for lineno, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: malformed {what} line ({e.msg})") from e
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}:{lineno}: malformed {what} line (not UTF-8: {e.reason})") from e
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: {what} line is not a JSON object")
        missing = [f for f in required if f not in row]
        if missing:
            raise ValueError(f"{path}:{lineno}: missing required field(s) {missing}")
        problem = check(row) if check is not None else None
        if problem:
            raise ValueError(f"{path}:{lineno}: {problem}; correct the line or delete it")
        rows.append(row)
    return rows
