"""Results store: one JSON line per metric value; the only interface between runs and tables.

Each line of ``results.jsonl`` holds the required fields :data:`REQUIRED` (run_id, experiment,
seed, model, task, dataset, language, split, metric, dim, precision, value), ``model_fingerprint``
(defaults to ``model``), ``git_commit`` (``git rev-parse HEAD`` of the code's checkout, None
outside a repository) and ``time`` (ISO 8601, UTC), plus any extra fields of the record (e.g.
``relative_drop``). A required field may be None (e.g. ``language`` for a monolingual set) but
must be present, in the record or in the run.

The run's resolved ``config`` (a few KB) is written once per run to the sidecar
``results.runs.jsonl`` (``{"run_id", "time", "config"}``; the last line per run_id wins) instead of
on each of the run's ~1,000 metric lines, and :meth:`ResultsStore.read` joins it back as the
``config`` column. Keep the two files together. A metric line that carries its own ``config``
(older stores) keeps it.

**Per-item scores.** The main-metric records of the evaluation suite name, in their ``items`` field,
a file of the sidecar directory ``results.items/`` (path relative to the store's directory):
``results.items/<run_id>/<task_key[:24]>.npz``, one per task of the run that computed it (a cached
task's records name the file of the run they were reused from), holding that task's per-item scores
at every (dim, precision) it evaluated (format: :func:`jina5.eval.items.save_items`). Records of
older stores have no ``items``; :mod:`jina5.eval.bootstrap` then reports no interval. Keep the
directory with the store.

Appends are whole lines: each call writes its batch of lines in one ``write`` (looping only on a
short write) with O_APPEND, then ``fsync``s, holding an exclusive ``flock`` on the file; a failed
write (e.g. a full disk) truncates the file back to where the batch began. Readers hold a shared
``flock``, so they never see a half-written batch. A crash can still leave a torn final line (no
trailing newline, not JSON): the next append or read quarantines it (the first to get the lock):
its bytes are appended to the side file ``results.jsonl.torn`` (``results.runs.jsonl.torn`` for the
sidecar; a header line names the time, the line and the byte offset; never overwritten), the file is
truncated to the end of its last complete line, and a warning names ``file:line`` and the side file.
A read that cannot write the file (read-only) skips the torn line with that warning instead. A final
line that is valid JSON but lacks its newline (a hand edit) is a complete record: it is kept and the
next append writes the missing newline first. A complete (newline-terminated) line that is not a
valid record raises naming ``file:line``. No complete line is ever dropped. The run line is written
before the run's metric lines, so no metric line lacks its config.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from jina5.eval.config import plain
from jina5.eval.items import ItemScores, load_items, save_items

RUN_FIELDS = ("run_id", "experiment", "seed", "model")
RECORD_FIELDS = ("task", "dataset", "language", "split", "metric", "dim", "precision", "value")
REQUIRED = RUN_FIELDS + RECORD_FIELDS
META_FIELDS = ("model_fingerprint", "config", "git_commit", "time")
COLUMNS = REQUIRED + META_FIELDS
TORN_SUFFIX = ".torn"  # results.jsonl -> results.jsonl.torn: quarantined torn final lines
_CHUNK = 1 << 16  # bytes per read when scanning the file for newlines

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD commit of the checkout holding this package, or None (no git, not a repository)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_config(config: Any) -> dict:
    """A run's resolved config (OmegaConf or any mapping; None -> {}) as a plain dict."""
    config = plain(config if config is not None else {})
    if not isinstance(config, Mapping):
        raise TypeError(f"run config must be a mapping, got {type(config).__name__}")
    return dict(config)


def new_run_id(experiment: str, seed: int | None = None) -> str:
    """``<experiment>-seed<seed>-<UTC time, microseconds>`` (``<experiment>-<time>`` without a seed);
    the experiment name is reduced to ``[A-Za-z0-9_.-]`` and its last 60 characters."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", experiment).strip("_")[-60:]
    return f"{name}-seed{seed}-{stamp}" if seed is not None else f"{name}-{stamp}"


def isna(value: Any) -> bool:
    """None or a float NaN (what a missing field reads back as from a DataFrame)."""
    return value is None or (isinstance(value, float) and value != value)


def runs_path_for(path: Path) -> Path:
    """The run-config sidecar of a results file: ``results.jsonl`` -> ``results.runs.jsonl``."""
    return path.with_name(f"{path.stem}.runs{path.suffix or '.jsonl'}")


def items_dir_for(path: Path) -> Path:
    """The per-item sidecar directory of a results file: ``results.jsonl`` -> ``results.items/``."""
    return path.with_name(f"{path.stem}.items")


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


def _append_lines(path: Path, lines: list[dict]) -> None:
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


def _read_lines(path: Path, what: str, required: tuple[str, ...]) -> list[dict]:
    """Parse a JSON-lines file (under a shared ``flock``). A torn final line (no newline, not JSON)
    is quarantined (:func:`_quarantine_on_read`) and skipped; any other bad line raises naming
    ``path:line``."""
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
        rows.append(row)
    return rows


class ResultsStore:
    """Append-only JSON-lines results file + run-config sidecar; see the module docstring."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.runs_path = runs_path_for(self.path)
        self.items_dir = items_dir_for(self.path)
        self._items: dict[str, dict[tuple[int, str], ItemScores]] = {}  # file -> its items, once read
        self._configs_written: dict[str, dict] = {}  # run_id -> config this object already wrote

    # ------------------------------------------------------------------ writing
    def lines_for(self, records: Iterable[Mapping], run: Mapping) -> list[dict]:
        """The metric lines :meth:`append` would write for ``records`` of ``run`` (validated)."""
        base = {k: v for k, v in run.items() if k != "config"}
        base.setdefault("model_fingerprint", run.get("model"))
        base.setdefault("git_commit", git_commit())
        base["time"] = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        lines = []
        for i, rec in enumerate(records):
            line = {**base, **rec}
            missing = [f for f in REQUIRED if f not in line]
            if missing:
                raise ValueError(
                    f"results record {i} ({rec.get('task')}/{rec.get('metric')}) is missing required "
                    f"field(s) {missing}; give them in the record or in the run"
                )
            if not (line.get("items") is None or isinstance(line["items"], str)):
                raise TypeError(
                    f"results record {i}: 'items' must name a sidecar file (write_items), "
                    f"got {type(line['items']).__name__}"
                )
            line["dim"] = None if isna(line["dim"]) else int(line["dim"])  # None: not an embedding metric
            line["value"] = float(line["value"])
            lines.append(line)
        return lines

    def append(self, records: Iterable[Mapping], run: Mapping) -> int:
        """Append one JSON line per record (record fields override run fields); returns the count.

        All lines are built and validated before the first write, so a bad record writes nothing.
        The run's config goes to the sidecar once per (store object, run_id, config).
        """
        lines = self.lines_for(records, run)
        if not lines:
            return 0
        config = run_config(run.get("config"))
        new_runs = [
            run_id
            for run_id in dict.fromkeys(str(line["run_id"]) for line in lines)
            if self._configs_written.get(run_id) != config
        ]  # records may name their own run_id
        if new_runs:
            _append_lines(
                self.runs_path, [{"run_id": r, "time": lines[0]["time"], "config": config} for r in new_runs]
            )
            self._configs_written.update(dict.fromkeys(new_runs, config))
        _append_lines(self.path, lines)
        return len(lines)

    def write_items(
        self, run_id: str, task_key: str, by_setting: Mapping[tuple[int, str], ItemScores]
    ) -> str:
        """Write one task's per-item scores ({(dim, precision): ItemScores}) to the sidecar; returns the
        file's path relative to the store's directory, for the records' ``items`` field."""
        run_dir = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(run_id))
        path = self.items_dir / run_dir / f"{task_key[:24]}.npz"
        save_items(path, by_setting)
        self._items.pop(self.relative(path), None)
        return self.relative(path)

    def relative(self, path: Path) -> str:
        """``path`` relative to the store's directory, with forward slashes."""
        return path.relative_to(self.path.parent).as_posix()

    def has_items(self, ref: Any) -> bool:
        """Whether ``ref`` (a record's ``items`` field) names an existing sidecar file."""
        return isinstance(ref, str) and bool(ref) and (self.path.parent / ref).is_file()

    def read_items(self, ref: str) -> dict[tuple[int, str], ItemScores]:
        """{(dim, precision): ItemScores} of the sidecar file a record's ``items`` field names (read once
        per store object)."""
        if ref not in self._items:
            self._items[ref] = load_items(self.path.parent / ref)
        return self._items[ref]

    # ------------------------------------------------------------------ reading
    def _rows(self) -> list[dict]:
        rows = _read_lines(self.path, "results", REQUIRED)
        if rows:
            configs = {
                str(r["run_id"]): r["config"]
                for r in _read_lines(self.runs_path, "run", ("run_id", "config"))
            }
            for row in rows:
                if "config" not in row:
                    row["config"] = configs.get(str(row["run_id"]))
        return rows

    def read(self, **filters: Any) -> pd.DataFrame:
        """All lines as a DataFrame (columns :data:`COLUMNS` first, then extras), optionally filtered.

        ``filters`` are column=value (equality) or column=[values] (membership), e.g.
        ``read(task="retrieval", precision=["float32", "binary"])``. Unknown columns raise.
        """
        df = pd.DataFrame(self._rows())
        for col in COLUMNS:
            if col not in df.columns:
                df[col] = pd.Series(dtype=object)
        df = df[list(COLUMNS) + [c for c in df.columns if c not in COLUMNS]]
        for col, want in filters.items():
            if col not in df.columns:
                raise ValueError(f"unknown results column {col!r} in filter; columns: {list(df.columns)}")
            if isinstance(want, list | tuple | set | frozenset):
                df = df[df[col].isin(list(want))]
            else:
                df = df[df[col] == want]
        return df.reset_index(drop=True)
