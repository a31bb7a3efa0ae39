"""``jina5.eval.models.load_model``: the device the encoder evaluates on (issue 25: ``jina5.evaluate`` and
``jina5.mteb`` never moved the encoder to a GPU)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

import jina5.model.precision as precision
from jina5.eval.models import load_model
from jina5.model.encoder import Encoder


def _cfg(**over):
    return OmegaConf.create(
        {"model": "tiny:bert", "pooling": "mean", "precision": "auto", "baselines": {}, **over}
    )


@pytest.mark.parametrize(
    ("cuda", "device", "moved", "path"),
    [
        (True, "auto", torch.device("cuda"), "bf16"),  # auto: the GPU, and the precision resolved there
        (True, None, torch.device("cuda"), "bf16"),  # a config without the key: auto
        (True, "cuda:1", torch.device("cuda", 1), "bf16"),
        (False, "auto", None, "fp32"),  # no GPU: stays on the CPU, resolved for the CPU
        (True, "cpu", None, "fp32"),
    ],
)
def test_the_encoder_is_moved_to_the_eval_device(monkeypatch, cuda, device, moved, path):
    moves: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(Encoder, "to", lambda self, d: moves.append(torch.device(d)) or self)
    # stand-in hardware: bf16 on the GPU, none on this CPU
    monkeypatch.setattr(precision, "fast_bf16", lambda device_type: (device_type == "cuda", "stand-in"))
    cfg = _cfg() if device is None else _cfg(device=device)
    loaded = load_model(cfg)
    assert moves == ([] if moved is None else [moved])
    assert loaded.encoder.compute_precision == path
