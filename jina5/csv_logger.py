"""A CSV logger that survives resuming: the rows logged before the resumed checkpoint are kept.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when its writer starts, so a run
resumed from ``last.ckpt`` would lose its training and dev curve before the interruption (the
Figure 3 analog reads those curves). Here the writer instead keeps the rows whose ``step`` is
below ``keep_before_step`` (the checkpoint's ``global_step``; the resumed run logs every later
step again) and appends after them. ``keep_before_step=0`` (a fresh run) drops every old row.
:class:`AlignLogStep` makes the logged ``step`` equal ``global_step`` after a resume.
"""

from __future__ import annotations

import csv
import logging
import os
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

log = logging.getLogger(__name__)


class _KeepingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_before_step: int) -> None:
        self.keep_before_step = keep_before_step
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        """Trim metrics.csv to the rows before ``keep_before_step`` (instead of deleting it)."""
        path = self.metrics_file_path
        if not os.path.isfile(path):
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            keys = sorted(reader.fieldnames or [])
            rows = list(reader)
        kept = [
            r
            for r in rows
            if r.get("step") not in (None, "") and int(float(r["step"])) < self.keep_before_step
        ]
        if not kept:
            os.remove(path)
            return
        with open(path, "w", newline="") as f:  # sorted header: the order save() appends in
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(kept)
        self.metrics_keys = keys
        log.info(
            "%s: resuming at step %d, kept %d of %d logged rows",
            path,
            self.keep_before_step,
            len(kept),
            len(rows),
        )


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` keeps the rows logged before ``keep_before_step``.

    Set ``keep_before_step`` (``jina5.runs`` does: the resumed checkpoint's ``global_step``) before
    the first log call.
    """

    def __init__(self, *args: Any, keep_before_step: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keep_before_step = keep_before_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(self.log_dir, self.keep_before_step)
        return self._experiment


class AlignLogStep(Callback):
    """Log every metric at ``trainer.global_step`` again after a resume.

    Lightning adds one to its logging counter (``_batches_that_stepped``) when it restarts from a
    checkpoint, which is right for a checkpoint saved mid-step and one too many for ours saved at
    the end of training (``FinalState``), so an extended run would log step 3 as 4. With one optimizer
    and automatic optimization the counter must equal ``global_step``; this sets it so before the
    first batch.
    """

    def __init__(self) -> None:
        self._aligned = False

    def on_train_start(self, trainer: Trainer, module: LightningModule) -> None:
        self._aligned = False

    def on_train_batch_start(
        self, trainer: Trainer, module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self._aligned:
            trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step
            self._aligned = True
