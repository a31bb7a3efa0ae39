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

Appends are whole lines, under a lock, and a torn final line left by a crash is quarantined to
``results.jsonl.torn`` (``results.runs.jsonl.torn`` for the sidecar) with a warning naming
``file:line``; no complete line is ever dropped (``jina5.eval.jsonl_file``). The run line is written
before the run's metric lines, so no metric line lacks its config.

**Complete or absent.** An evaluation files a start line and a completion line in the sidecar
(:meth:`ResultsStore.start_run`, :meth:`ResultsStore.complete_run`; their ``evaluation`` field);
:meth:`ResultsStore.read` leaves out the rows of a partial run (killed, failed, still running) with a
warning naming it and the tasks it lacks; the rules, and how a store written before these lines is read,
are :mod:`jina5.eval.completion`. :meth:`ResultsStore.check_writable` tells an unwritable store before
anything is computed.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from jina5.eval.completion import COMPLETE, STARTED, PartialRun, partial_runs
from jina5.eval.config import plain
from jina5.eval.items import ItemScores, load_items, save_items
from jina5.eval.jsonl_file import append_lines, read_lines

RUN_FIELDS = ("run_id", "experiment", "seed", "model")
RECORD_FIELDS = ("task", "dataset", "language", "split", "metric", "dim", "precision", "value")
REQUIRED = RUN_FIELDS + RECORD_FIELDS
META_FIELDS = ("model_fingerprint", "config", "git_commit", "time")
COLUMNS = REQUIRED + META_FIELDS

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


def bad_value(row: Mapping) -> str | None:
    """What is wrong with a stored line's numbers, or None: ``value`` must be a number (NaN included:
    :meth:`ResultsStore.lines_for` writes floats) and ``dim`` a whole number or null. A table built over a
    line that breaks this fails far from it (``TypeError: agg function failed``), so the read names the
    line instead."""
    value, dim = row["value"], row["dim"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{row.get('task')}/{row.get('metric')} value {value!r} is not a number"
    whole = isinstance(dim, int) and not isinstance(dim, bool)
    if not (isna(dim) or whole or (isinstance(dim, float) and dim.is_integer())):
        return f"dim {dim!r} is not a whole number or null"
    return None


def runs_path_for(path: Path) -> Path:
    """The run-config sidecar of a results file: ``results.jsonl`` -> ``results.runs.jsonl``."""
    return path.with_name(f"{path.stem}.runs{path.suffix or '.jsonl'}")


def items_dir_for(path: Path) -> Path:
    """The per-item sidecar directory of a results file: ``results.jsonl`` -> ``results.items/``."""
    return path.with_name(f"{path.stem}.items")


class ResultsStore:
    """Append-only JSON-lines results file + run-config sidecar; see the module docstring."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.runs_path = runs_path_for(self.path)
        self.items_dir = items_dir_for(self.path)
        self._items: dict[str, dict[tuple[int, str], ItemScores]] = {}  # file -> its items, once read
        self._configs_written: dict[str, dict] = {}  # run_id -> config this object already wrote
        self._warned: set[str] = set()  # partial runs this object has warned about

    def check_writable(self) -> None:
        """Raise PermissionError naming the path unless the store, its run sidecar, its per-item directory
        and the summary files beside it can be written (checked by opening them for appending, and a probe
        file; nothing is created but the store's directory)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for path in (self.path, self.runs_path):
                if path.exists():
                    os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
            for directory in (self.path.parent, self.items_dir):
                if directory.exists():
                    tempfile.TemporaryFile(dir=directory).close()
        except OSError as e:
            raise PermissionError(
                f"results store {self.path} cannot be written ({e.strerror}: {e.filename}); nothing was "
                "evaluated. Make it writable, or give another store: results=<dir>/results.jsonl"
            ) from e

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
            append_lines(
                self.runs_path, [{"run_id": r, "time": lines[0]["time"], "config": config} for r in new_runs]
            )
            self._configs_written.update(dict.fromkeys(new_runs, config))
        append_lines(self.path, lines)
        return len(lines)

    def start_run(self, run: Mapping, tasks: Iterable[str] | None) -> None:
        """File that the evaluation ``run`` begins, with its ``tasks`` (names; None: not itemised): until
        :meth:`complete_run`, :meth:`read` leaves its rows out as partial."""
        evaluation: dict[str, Any] = {"status": STARTED}
        if tasks is not None:
            evaluation["tasks"] = list(tasks)
        self._run_line(run, evaluation)

    def complete_run(self, run: Mapping, resumes: Iterable[str] = ()) -> None:
        """File that the evaluation ``run`` completed; ``resumes``: the partial runs it took tasks from."""
        self._run_line(run, {"status": COMPLETE, "resumes": list(resumes)})

    def _run_line(self, run: Mapping, evaluation: dict) -> None:
        run_id, config = str(run["run_id"]), run_config(run.get("config"))
        stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        append_lines(
            self.runs_path, [{"run_id": run_id, "time": stamp, "config": config, "evaluation": evaluation}]
        )
        self._configs_written[run_id] = config

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
    def _rows(self) -> tuple[list[dict], dict[str, list[dict]]]:
        """The metric lines (each with its run's ``config``) and {run_id: the ``evaluation`` entries of
        its sidecar lines}."""
        rows = read_lines(self.path, "results", REQUIRED, bad_value)
        runs = read_lines(self.runs_path, "run", ("run_id", "config"))
        configs = {str(r["run_id"]): r["config"] for r in runs}
        marks: dict[str, list[dict]] = {}
        for r in runs:
            if isinstance(r.get("evaluation"), Mapping):
                marks.setdefault(str(r["run_id"]), []).append(r["evaluation"])
        for row in rows:
            if "config" not in row:
                row["config"] = configs.get(str(row["run_id"]))
        return rows, marks

    def read_all(self) -> tuple[pd.DataFrame, dict[str, PartialRun]]:
        """Every line, of complete and partial runs alike, as a DataFrame (columns :data:`COLUMNS` first,
        then extras), and {run_id: :class:`jina5.eval.completion.PartialRun`} of the partial runs."""
        rows, marks = self._rows()
        df = pd.DataFrame(rows)
        for col in COLUMNS:
            if col not in df.columns:
                df[col] = pd.Series(dtype=object)
        df = df[list(COLUMNS) + [c for c in df.columns if c not in COLUMNS]]
        return df, partial_runs(df, marks)

    def partial_runs(self) -> dict[str, PartialRun]:
        """{run_id: :class:`jina5.eval.completion.PartialRun`} of the store's partial evaluations."""
        return self.read_all()[1]

    def read(self, include_partial: Iterable[str] = (), **filters: Any) -> pd.DataFrame:
        """The lines of complete runs as a DataFrame (columns :data:`COLUMNS` first, then extras),
        optionally filtered.

        ``filters`` are column=value (equality) or column=[values] (membership), e.g.
        ``read(task="retrieval", precision=["float32", "binary"])``. Unknown columns raise. The rows of a
        partial run (:mod:`jina5.eval.completion`) are left out, with a warning naming it and the tasks
        it lacks (once per run and store object; a run already resumed by a completed one is left out
        silently), except for the run ids in ``include_partial`` (what a resumed evaluation reads).
        """
        df, partials = self.read_all()
        for col, want in filters.items():
            if col not in df.columns:
                raise ValueError(f"unknown results column {col!r} in filter; columns: {list(df.columns)}")
            if isinstance(want, list | tuple | set | frozenset):
                df = df[df[col].isin(list(want))]
            else:
                df = df[df[col] == want]
        hidden = set(partials) - {str(r) for r in include_partial}
        shown = ~df["run_id"].astype(str).isin(hidden)
        for run_id in dict.fromkeys(df.loc[~shown, "run_id"].astype(str)):
            partial = partials[run_id]
            if partial.resumed_by is None and run_id not in self._warned:
                log.warning(partial.describe(self.path))
                self._warned.add(run_id)
        return df[shown].reset_index(drop=True)
