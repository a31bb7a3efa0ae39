"""The run's training and dev curves, whatever logger (or none) the run uses: ``<run dir>/curves.jsonl``.

:class:`CurveRecord` is a Lightning ``Logger`` that ``jina5.train`` always adds after the configured
ones (``conf/logger/``), so it receives every metric logged to them, at the same step, and appends one
JSON line per metric::

    {"step": 12, "name": "train/loss", "value": 0.4137}

The step is Lightning's logging step (``global_step`` with ``AlignLogStep``): a training metric logged
during optimizer step s (1-based) has step s - 1, a dev check after step s has step s.

**Resume.** A run resumed from a checkpoint of global step g logs every step from g on again, so the
first write keeps only the lines whose step is below ``keep_before_step`` (``jina5.runs.lifecycle`` sets it to
g; 0, a fresh run, keeps none) and appends after them: a resumed curve holds each step once, as an
unbroken run's does. The file is rewritten atomically (temporary file, rename); appends are whole
lines (one ``write`` of the batch, flushed). One process writes a run's record (``jina5.runs.lock``).

:func:`read_curves` reads it back as a long table (step, name, value); a run directory written before
this record existed has only ``logs/metrics.csv`` (Lightning's CSV logger), which it reads instead;
:func:`training_records` turns a finished run's curves and wall time into results-store records.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from jina5.atomic import atomic_write_text

log = logging.getLogger(__name__)

CURVES_FILE = "curves.jsonl"
LEGACY_METRICS_CSV = Path("logs") / "metrics.csv"  # the CSV logger's curves: a run dir without curves.jsonl
COLUMNS = ["step", "name", "value"]
# what Lightning adds to every logging call (the step's epoch, again with each dev check), not a metric
LIGHTNING_EXTRAS = frozenset({"epoch"})


def _parse(line: str) -> dict | None:
    """A complete record line -> its dict; None for a torn line (a crash mid-write)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) and set(COLUMNS) <= row.keys() else None


def _complete_lines(path: Path) -> list[str]:
    """The newline-terminated, parseable lines of ``path`` (a torn final line is left out)."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")
    kept = [line for line in lines[:-1] if _parse(line) is not None]  # lines[-1]: after the last newline
    if lines[-1] or len(kept) < len(lines) - 1:
        log.warning("%s: left out %d torn line(s)", path, len(lines) - 1 - len(kept) + bool(lines[-1]))
    return kept


class CurveRecord(Logger):
    """Appends every logged metric to ``<run_dir>/curves.jsonl``; see the module docstring.

    Args:
        run_dir: the run directory.
        keep_before_step: on the first write, keep the lines with step < this and drop the rest (set it
            before fitting; ``jina5.runs.lifecycle`` does, to the resumed checkpoint's global step).
    """

    def __init__(self, run_dir: str | Path, keep_before_step: int = 0) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / CURVES_FILE
        self.keep_before_step = keep_before_step
        self._started = False

    @property
    def name(self) -> str:
        return "curves"

    @property
    def version(self) -> str:
        return ""  # like the configured loggers': no ``v_num`` in the progress bar

    @property
    def save_dir(self) -> str:
        return str(self.run_dir)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing: the run's resolved config is ``config.yaml`` beside the record."""

    def _start(self) -> None:
        """Keep the lines logged before ``keep_before_step`` (atomically), drop the rest."""
        self._started = True
        if not self.path.exists():
            return
        lines = _complete_lines(self.path)
        kept = [line for line in lines if int(json.loads(line)["step"]) < self.keep_before_step]
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))
        log.info(
            "%s: starting at step %d, kept %d of %d logged values",
            self.path,
            self.keep_before_step,
            len(kept),
            len(lines),
        )

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Append one line per metric: {"step", "name", "value"} (values as Python floats; Lightning's
        ``epoch`` left out, so each metric has one value per step)."""
        if not self._started:
            self._start()
        step = int(step) if step is not None else 0
        batch = "".join(
            json.dumps({"step": step, "name": name, "value": float(value)}) + "\n"
            for name, value in metrics.items()
            if name not in LIGHTNING_EXTRAS
        )
        if not batch:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(batch)
            f.flush()


def _read_legacy_csv(path: Path) -> pd.DataFrame:
    """``logs/metrics.csv`` (one row per logging call, one column per metric) -> (step, name, value)."""
    wide = pd.read_csv(path).drop(columns=list(LIGHTNING_EXTRAS), errors="ignore")
    return wide.melt(id_vars="step", var_name="name", value_name="value").dropna(subset=["value", "step"])


def read_curves(run_dir: str | Path) -> pd.DataFrame:
    """Every metric the run logged as a long table: ``step`` (int), ``name`` (str), ``value`` (float),
    sorted by name, then step (as logged). From ``curves.jsonl``; a run without one falls back to its
    ``logs/metrics.csv`` (a run directory without the record). No record at all: an empty table."""
    run_dir = Path(run_dir)
    record, legacy = run_dir / CURVES_FILE, run_dir / LEGACY_METRICS_CSV
    if record.exists():
        df = pd.DataFrame([json.loads(line) for line in _complete_lines(record)], columns=COLUMNS)
    elif legacy.exists():
        df = _read_legacy_csv(legacy)
    else:
        df = pd.DataFrame(columns=COLUMNS)
    df = df[COLUMNS].astype({"step": int, "name": str, "value": float})
    return df.sort_values(["name", "step"], kind="stable").reset_index(drop=True)


def training_records(run: Path) -> list[dict]:
    """The run's dev curve and training curves (its curve record, :func:`read_curves`: any logger, or
    none) and wall time (done.json) as records."""
    base = {"dataset": "dev", "language": "", "split": "dev", "dim": None, "precision": "float32"}
    done = json.loads((run / "done.json").read_text())
    records = [
        {
            **base,
            "task": "training",
            "metric": "train_seconds",
            "value": done["train_seconds"],
            "step": done["steps"],
        }
    ]
    curves = read_curves(run)
    curves = curves[curves["name"].str.startswith(("val/", "train/"))]
    for name, step, value in zip(curves["name"], curves["step"], curves["value"], strict=True):
        records.append(
            {
                **base,
                "task": "dev_curve" if name.startswith("val/") else "training_curve",
                "metric": name.split("/", 1)[1],
                "value": float(value),
                "step": int(step),
            }
        )
    return records
