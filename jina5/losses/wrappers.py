"""Wrappers: transform the student side of an EmbeddingBatch, then call any inner loss.

They only transform tensors, so they compose with every loss and with each other, e.g.
``Matryoshka(BinaryAware(InfoNCE()), dims=[64, 256, 768])``.

Matryoshka (representation learning; dims and weights are config, the paper gives neither):

    L = sum_k w_k * L_inner(batch_{d_k}),   batch_d: z -> normalise(z[..., :d]) for z in {x, y, negatives}

Only student-side tensors are truncated; teacher and base vectors are fixed targets and keep their
full dims. ``EmbeddingDistillation`` therefore sees a d-dim student input, which its projection
handles with the first d input columns of one shared weight: psi_d(z) = W[:, :d] z + b.

BinaryAware (straight-through sign; an ablation tool, the paper uses GOR instead):

    forward:  b = sign(z) / sqrt(D)   (unit norm when no coordinate is exactly 0)
    backward: dL/dz = dL/db            (z + (b - z).detach(): gradient of the identity)

applied to every student-side tensor, D being its (possibly truncated) last dim.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from jina5.losses._util import unit
from jina5.losses.batch import EmbeddingBatch


class _Wrapper(nn.Module):
    """A loss around an inner loss: passes through its ``requires``, ``needs_pairs`` and ``log_values``."""

    inner: nn.Module

    @property
    def requires(self) -> tuple[str, ...]:
        return tuple(getattr(self.inner, "requires", ()))

    @property
    def needs_pairs(self) -> bool:
        return bool(getattr(self.inner, "needs_pairs", True))

    def log_values(self) -> dict[str, Tensor]:
        return self.inner.log_values() if hasattr(self.inner, "log_values") else {}


class Matryoshka(_Wrapper):
    """L = sum_k w_k * inner(batch truncated to dims[k] and re-normalised); see the module docstring.

    Args:
        inner: any loss module taking an EmbeddingBatch.
        dims: truncation dims; each must be <= the batch's student dim D (checked per batch).
        weights: one weight per dim; None = equal weights of 1.0 each.
    """

    def __init__(self, inner: nn.Module, dims: list[int], weights: list[float] | None = None) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if not dims or any(d < 1 for d in dims):
            raise ValueError(f"Matryoshka dims must be a non-empty list of positive ints, got {dims}")
        if weights is None:
            weights = [1.0] * len(dims)
        weights = [float(w) for w in weights]
        if len(weights) != len(dims):
            raise ValueError(f"Matryoshka got {len(weights)} weights for {len(dims)} dims {dims}")
        self.inner, self.dims, self.weights = inner, dims, weights

    def forward(self, batch: EmbeddingBatch) -> Tensor:
        too_big = [d for d in self.dims if d > batch.dim]
        if too_big:
            raise ValueError(f"Matryoshka dim(s) {too_big} exceed the student embedding dim {batch.dim}")
        total = batch.document.new_zeros(())
        for d, w in zip(self.dims, self.weights, strict=True):
            total = total + w * self.inner(batch.map_student(lambda z, d=d: unit(z[..., :d])))
        return total


def straight_through_sign(z: Tensor) -> Tensor:
    """Forward sign(z)/sqrt(D) over the last dim D; backward the identity."""
    b = torch.sign(z) / math.sqrt(z.shape[-1])
    return z + (b - z).detach()


class BinaryAware(_Wrapper):
    """inner(batch with student vectors replaced by straight-through sign(z)/sqrt(D)); see module doc.

    Args:
        inner: any loss module taking an EmbeddingBatch.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, batch: EmbeddingBatch) -> Tensor:
        return self.inner(batch.map_student(straight_through_sign))
