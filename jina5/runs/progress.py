"""The training progress bar: Lightning's tqdm bar, showing ``train/loss`` read only when it redraws.

Lightning turns every metric logged with ``prog_bar=True`` into a Python float at the end of every batch
(``_ResultCollection.metrics``: a host sync per step on an accelerator). ``train/loss`` is therefore logged
without it (``jina5.training.module``), and this bar reads it from ``trainer.callback_metrics`` (tensors,
no conversion) only at its refreshes: every ``refresh_rate`` batches, by default 1 on a CPU (where a read
costs nothing) and ``accelerator_refresh_rate`` on an accelerator.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class LossProgressBar(TQDMProgressBar):
    def __init__(self, refresh_rate: int | None = None, accelerator_refresh_rate: int = 50) -> None:
        super().__init__(refresh_rate=refresh_rate or 1)
        self._auto_rate = refresh_rate is None
        self._accelerator_refresh_rate = accelerator_refresh_rate

    def rate_for(self, device_type: str) -> int:
        """Batches between redraws on a ``device_type`` device (the constructor's, else the default)."""
        if self._auto_rate and device_type != "cpu":
            return self._accelerator_refresh_rate
        return self._refresh_rate

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._refresh_rate = self.rate_for(trainer.strategy.root_device.type)
        super().on_train_start(trainer, pl_module)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            metrics["train/loss"] = float(loss)
        return metrics
