"""Global orthogonal regulariser, GOR (paper loss 3; "spread-out" regularisation).

    L_GOR = mean_{i != j} (x_i . x_j)^2 + mean_{i != j} (y_i . y_j)^2

over the B(B-1) ordered off-diagonal pairs of the L2-normalised queries x and positive documents y
(inputs are re-normalised, a no-op on unit vectors). It pushes unrelated embeddings towards
orthogonality, spreading them over the sphere, which keeps rankings stable when every dimension is
reduced to its sign: the paper's only tool for binary-quantization robustness. With B < 2 there
are no pairs and the loss is 0.

Shapes: query, document (B, D). Returns a scalar.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jina5.losses._util import unit
from jina5.losses.batch import EmbeddingBatch


def mean_off_diagonal_sq(z: Tensor) -> Tensor:
    """(B, D) -> mean over i != j of (z_i . z_j)^2 for unit z_i; 0 if B < 2."""
    b = z.shape[0]
    if b < 2:
        return z.new_zeros(()) + 0.0 * z.sum()
    z = unit(z)
    gram = z @ z.T
    off = ~torch.eye(b, dtype=torch.bool, device=z.device)
    return gram[off].pow(2).mean()


class GlobalOrthogonal(nn.Module):
    """L = mean_{i!=j} (x_i . x_j)^2 + mean_{i!=j} (y_i . y_j)^2; see the module docstring."""

    requires: tuple[str, ...] = ()

    def forward(self, batch: EmbeddingBatch) -> Tensor:
        return mean_off_diagonal_sq(batch.query) + mean_off_diagonal_sq(batch.document)
