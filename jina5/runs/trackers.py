"""Experiment trackers: Lightning's W&B and MLflow loggers as a run needs them (``logger=wandb``,
``logger=mlflow``; ``conf/logger/``; install with ``pip install 'jina5[trackers]'``).

Each gets what the CSV logger gets: the resolved config (``jina5.runs.loggers.LogConfig``) and every
logged metric at its ``global_step``. What differs from Lightning's classes:

- :class:`WandbLogger` finishes its W&B run when fitting ends (``finalize``). Lightning's leaves it open
  until the process exits, and its next logger reuses an open run, so the runs of a sweep in one process
  (``-m`` with the basic launcher) would all land in the first run.
- :class:`MLflowLogger` keeps each config value whole up to MLflow's own limit (``MAX_PARAM_VAL_LENGTH``,
  6000 characters; longer ones are cut with a warning naming the key), where Lightning cuts every value
  at 250 characters without a word; and it names metrics and params by :func:`mlflow_key`
  (``val/ndcg@10`` -> ``val/ndcg_at_10``), where Lightning drops the characters MLflow refuses from a
  metric name (``val/ndcg10``) and passes a param key on (MLflow refuses the batch: the run stops).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

from jina5.runs.config import flatten

log = logging.getLogger(__name__)

MLFLOW_BATCH = 100  # MLflow takes at most 100 params per log_batch call


def mlflow_key(name: str) -> str:
    """A metric name or param key MLflow accepts (letters, digits, ``_ - . /`` and space): ``@`` reads
    ``_at_`` (as MTEB names ``ndcg_at_10``), any other character MLflow refuses becomes ``_``."""
    return re.sub(r"[^\w\-. /]", "_", name.replace("@", "_at_"))


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger`` whose W&B run is finished (exit code 0, or 1 when fitting failed)
    when fitting ends (module docstring)."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        if self._experiment is not None:
            self._experiment.finish(exit_code=0 if status == "success" else 1)
            self._experiment = None


class MLflowLogger(MLFlowLogger):
    """Lightning's ``MLFlowLogger`` with whole config values and readable metric names (module docstring).

    Params are the config flattened with ``/`` (``optimizer/lr``; keys by :func:`mlflow_key`), each value
    ``str(value)``; a list is one value (``objective/binary_aware``: ``[]``; Lightning drops an empty one).
    """

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        values = {mlflow_key(key): str(value) for key, value in flatten(params, sep="/").items()}
        for key, value in values.items():
            if len(value) > MAX_PARAM_VAL_LENGTH:
                log.warning(
                    "MLflow param %s: its %d characters are cut to MLflow's %d (config.yaml of the run "
                    "directory holds it whole)",
                    key,
                    len(value),
                    MAX_PARAM_VAL_LENGTH,
                )
        batch = [Param(key, value[:MAX_PARAM_VAL_LENGTH]) for key, value in values.items()]
        for start in range(0, len(batch), MLFLOW_BATCH):
            self.experiment.log_batch(
                run_id=self.run_id, params=batch[start : start + MLFLOW_BATCH], **self._log_batch_kwargs
            )

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({mlflow_key(k): v for k, v in metrics.items()}, step)
