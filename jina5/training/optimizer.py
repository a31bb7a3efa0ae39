"""The optimizer around the module's parameter groups: fused AdamW chosen by device, and gradient clipping
where Lightning's own clipping refuses (FSDP by norm; a fused optimizer under ``bf16-mixed``).

Fused AdamW computes torch's AdamW update (the same formula, per element) in one kernel over all
parameters instead of a loop of tensor ops: the weights it gives equal the default path's to fp32
rounding (``tests/unit/training/test_optimisation.py``), in about a tenth of the optimizer's time on a
CPU (the embedded default student, torch.profiler: its tensor-op loop was 0.1-0.15 of the step)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import lightning as L
import torch
from lightning.fabric.plugins.precision.amp import _optimizer_handles_unscaling
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import GradClipAlgorithmType
from torch.optim import Optimizer
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices


def resolve_fused(factory: Callable, device: torch.device) -> Callable:
    """An optimizer constructor (a ``functools.partial``) with ``fused=None`` (auto) resolved: True where
    torch has fused optimizer kernels for ``device``'s type (CPU and CUDA among them: the device types
    its optimizers accept ``fused=True`` on), else the argument is dropped (torch's default). Any other
    constructor or an explicit ``fused`` is returned as it is."""
    kwargs = getattr(factory, "keywords", None)
    if not isinstance(factory, partial) or "fused" not in kwargs or kwargs["fused"] is not None:
        return factory
    kwargs = {k: v for k, v in kwargs.items() if k != "fused"}
    if device.type in _get_fused_kernels_supported_devices():
        kwargs["fused"] = True
    return partial(factory.func, *factory.args, **kwargs)


def clip_gradients(
    module: L.LightningModule,
    optimizer: Optimizer,
    gradient_clip_val: float | None = None,
    gradient_clip_algorithm: str | None = None,
) -> None:
    """Clip the gradients before the optimizer step (the plain path: Lightning calls this with the
    trainer's settings; GradCache: ``training_step`` with the module's). Two cases Lightning's own
    clipping refuses are done here:

    - FSDP, by norm: the norm is over every rank's shard, so the root FSDP module clips
      (``FullyShardedDataParallel.clip_grad_norm_``; ``torch.nn.utils.clip_grad_norm_`` would clip
      each shard by its own norm, and Lightning's ``FSDPPrecision`` refuses it).
    - an optimizer that unscales its gradients in its step (fused AdamW) with no gradient scaler
      (``bf16-mixed``): Lightning's mixed-precision plugin refuses to clip for such an optimizer,
      because under ``16-mixed`` its gradients would still be scaled when clipped; with no scaler
      they are the true gradients, so they are clipped as for any other optimizer.

    Everything else is Lightning's ``clip_gradients`` (``16-mixed`` with a fused optimizer is
    refused there: jina5 never trains in fp16)."""
    trainer = module.trainer
    plugin = trainer.precision_plugin
    val = gradient_clip_val or 0.0
    algorithm = GradClipAlgorithmType((gradient_clip_algorithm or "norm").lower())
    if val > 0 and algorithm == GradClipAlgorithmType.NORM and isinstance(trainer.strategy, FSDPStrategy):
        trainer.strategy.model.clip_grad_norm_(val)
    elif val > 0 and _optimizer_handles_unscaling(optimizer) and getattr(plugin, "scaler", None) is None:
        Precision.clip_gradients(plugin, optimizer, val, algorithm)
    else:
        module.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
