"""The run's loggers: the configured ones (``conf/logger/``), the curve record, the config as hparams.

``logger`` in the training config is one of

- a single logger: a node with ``_target_`` (``logger=csv``, the default; ``logger=tensorboard``; the
  experiment trackers ``logger=wandb`` and ``logger=mlflow``: :mod:`jina5.runs.trackers`);
- several: a dict of named logger nodes, each with its own ``_target_`` (``logger=many``: csv and
  tensorboard; ``+logger@logger.wandb=wandb`` adds one), as lightning-hydra-template does; a null entry is
  left out;
- none: ``logger=none`` (an empty node) or ``~logger``.

:func:`build_loggers` instantiates them and always appends the run's :class:`jina5.runs.curves.CurveRecord`,
so the curves the tables read exist whatever the choice. :class:`LogConfig` hands the resolved config
to every logger's ``log_hyperparams`` at the start of fitting (CSV: ``hparams.yaml``; TensorBoard: its
HPARAMS tab, flattened to ``optimizer/lr`` etc., and ``hparams.yaml``). :class:`AlignLogStep` makes the
logged step equal ``global_step`` after a resume.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers.logger import Logger
from omegaconf import DictConfig

from jina5.runs.curves import CurveRecord

log = logging.getLogger(__name__)


def configured_loggers(logger_cfg: DictConfig | Mapping | None) -> list[Logger]:
    """``cfg.logger`` -> its loggers: [one] for a node with ``_target_``, one per non-null entry of a
    dict of logger nodes (in order), [] for None or an empty node."""
    if not logger_cfg:
        return []
    if "_target_" in logger_cfg:
        return [instantiate(logger_cfg)]
    loggers = []
    for name, node in logger_cfg.items():
        if node is None:
            continue
        if not isinstance(node, Mapping) or "_target_" not in node:
            raise ValueError(
                f"logger.{name} must be a logger config with a _target_ (logger is one logger, or a dict "
                f"of named loggers as in logger=many), got {node!r}"
            )
        loggers.append(instantiate(node))
    return loggers


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """The trainer's loggers: the configured ones, then the run's curve record
    (``<cfg.paths.output_dir>/curves.jsonl``)."""
    return [*configured_loggers(cfg.get("logger")), CurveRecord(cfg.paths.output_dir)]


class LogConfig(Callback):
    """At the start of fitting, ``logger.log_hyperparams(config)`` for every logger of the trainer.

    Args:
        config: the resolved run config as plain nested dicts (``OmegaConf.to_container(cfg,
            resolve=True)``, what ``config.yaml`` holds); loggers that need flat keys flatten it
            themselves (TensorBoard: ``optimizer/lr``).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_fit_start(self, trainer: Trainer, module: LightningModule) -> None:
        for logger in trainer.loggers:
            logger.log_hyperparams(self.config)


class AlignLogStep(Callback):
    """Log every metric at ``trainer.global_step`` again after a resume.

    Lightning adds one to its logging counter (``_batches_that_stepped``, private: there is no public
    setter) when it restarts from a checkpoint, which is right for a checkpoint saved mid-step and one
    too many for ours saved at the end of training (``FinalState``), so an extended run would log step
    3 as 4. With one optimizer and automatic optimization the counter must equal ``global_step``; this
    sets it so before the first batch. Where a Lightning version lacks the counter it warns and leaves
    the steps as Lightning logs them (``tests/e2e/test_train.py`` resume tests fail then).
    """

    def __init__(self) -> None:
        self._aligned = False

    def on_train_start(self, trainer: Trainer, module: LightningModule) -> None:
        self._aligned = False

    def on_train_batch_start(
        self, trainer: Trainer, module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._aligned:
            return
        self._aligned = True
        loop = trainer.fit_loop.epoch_loop
        if not hasattr(loop, "_batches_that_stepped"):
            log.warning(
                "this Lightning has no _batches_that_stepped: logged steps may be off by one on resume"
            )
            return
        loop._batches_that_stepped = trainer.global_step
