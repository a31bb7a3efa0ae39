"""Where, and under which precision, the forwards a run makes outside its training steps happen.

Lightning calls the ``setup`` hooks (the datamodule's, then the module's) before the strategy moves the
model to its device and wraps it (DDP, FSDP), and outside the precision plugin's autocast. The work
done there (the projection warm start, hard-negative mining, the teacher fill) is placed here
explicitly:

- on the run's accelerator, ``trainer.strategy.root_device`` (:func:`run_device`): the student is moved
  there before its first setup forward (the strategy's own move is then a no-op);
- under the run's precision (:func:`setup_path`): bf16 autocast when the trainer trains ``bf16-mixed``
  (or ``bf16-true``) on an accelerator, or wherever the student's attention takes half precision only
  (``flash_attention_2``: fp32 inputs are refused). On a CPU otherwise the setup forwards keep the
  encoder's own path (fp32), as they always did: a default CPU run's results do not move.

Evaluation (``python -m jina5.evaluate`` / ``jina5.mteb``) picks its device with :func:`resolve_device`
(the ``device`` key of conf/eval.yaml and conf/mteb.yaml).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from jina5.model.precision import BF16

#: attention implementations that refuse fp32 inputs (flash-attn takes fp16 / bf16 only)
HALF_ONLY_ATTENTION = ("flash_attention_2", "flash_attention_3")


def resolve_device(choice: str | torch.device | None) -> torch.device:
    """``auto`` (or None): ``cuda`` when a CUDA device is available, else ``cpu``; anything else as
    ``torch.device`` reads it (``cpu``, ``cuda``, ``cuda:1``)."""
    if choice is None or str(choice) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def run_device(trainer: Any) -> torch.device:
    """The accelerator a run was given (its strategy's ``root_device``); the CPU without a trainer."""
    strategy = getattr(trainer, "strategy", None)
    return strategy.root_device if strategy is not None else torch.device("cpu")


def run_precision(trainer: Any) -> str:
    """The trainer's Lightning precision (``bf16-mixed``, ``32-true``, ...); ``32-true`` without one."""
    return str(getattr(trainer, "precision", None) or "32-true")


def half_only_attention(encoder: nn.Module) -> bool:
    """Whether the encoder's backbone attends with an implementation that refuses fp32 inputs."""
    config = getattr(getattr(encoder, "backbone", None), "config", None)
    return getattr(config, "_attn_implementation", None) in HALF_ONLY_ATTENTION


def setup_path(encoder: nn.Module, device: torch.device, precision: str) -> str:
    """The compute path (``bf16`` | ``fp32``) of the encoder's setup forwards on ``device`` in a run
    training at Lightning ``precision``; see the module docstring."""
    own = encoder.compute_precision
    if not precision.startswith("bf16"):
        return own
    if device.type != "cpu" or half_only_attention(encoder):
        return BF16
    return own


@contextmanager
def setup_forwards(encoder: nn.Module, device: torch.device, precision: str) -> Iterator[nn.Module]:
    """Move ``encoder`` to ``device`` (it stays there) and run its ``encode`` calls inside under the
    run's precision (:func:`setup_path`); the encoder's own ``compute_precision`` comes back after."""
    if next(encoder.parameters()).device != device:
        encoder.to(device)
    own = encoder.compute_precision
    encoder.compute_precision = setup_path(encoder, device, precision)
    try:
        yield encoder
    finally:
        encoder.compute_precision = own


@contextmanager
def trainer_setup_forwards(encoder: nn.Module, trainer: Any) -> Iterator[nn.Module]:
    """:func:`setup_forwards` on the trainer's device and precision (the CPU and fp32 without one)."""
    with setup_forwards(encoder, run_device(trainer), run_precision(trainer)) as placed:
        yield placed
