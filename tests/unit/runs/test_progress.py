"""The progress bar shows train/loss without a host sync per step: Lightning converts only prog_bar metrics
to floats every batch, so train/loss is not one, and the bar reads it at its refreshes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from helpers import run_cfg

from jina5.runs.progress import LossProgressBar
from jina5.train import build


def test_train_loss_is_not_converted_to_a_float_every_batch(tmp_path):
    module, datamodule, trainer = build(
        run_cfg(tmp_path, "trainer.max_steps=2", "trainer.val_check_interval=2")
    )
    trainer.fit(module, datamodule=datamodule)
    assert "train/loss" not in trainer.progress_bar_metrics  # Lightning's per-batch .item() list
    assert torch.is_tensor(trainer.callback_metrics["train/loss"])  # still logged, as a tensor


@pytest.mark.parametrize(("device", "rate"), [("cpu", 1), ("cuda", 50)])
def test_the_bar_redraws_less_often_on_an_accelerator_and_shows_the_loss(device, rate):
    assert LossProgressBar().rate_for(device) == rate
    assert LossProgressBar(refresh_rate=7).rate_for(device) == 7  # an explicit rate is kept
    trainer = SimpleNamespace(
        callback_metrics={"train/loss": torch.tensor(0.25)}, progress_bar_metrics={}, loggers=[]
    )
    assert LossProgressBar().get_metrics(trainer, None)["train/loss"] == 0.25
