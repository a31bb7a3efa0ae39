"""Small helpers shared by the loss modules (not losses themselves)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from jina5.losses.batch import EmbeddingBatch


def unit(x: Tensor) -> Tensor:
    """L2-normalise along the last dim (a no-op, up to rounding, on unit vectors)."""
    return F.normalize(x, dim=-1, eps=1e-12)


def cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """(N, D), (M, D) -> (N, M) cosine similarities phi(a_i, b_j)."""
    return unit(a) @ unit(b).transpose(-1, -2)


def require(batch: EmbeddingBatch, fields: tuple[str, ...], loss: str) -> None:
    """Raise a ValueError naming the loss and every required batch field that is None."""
    missing = [f for f in fields if getattr(batch, f) is None]
    if missing:
        raise ValueError(
            f"{loss} needs EmbeddingBatch fields {missing}, which are None in this batch "
            f"(set Objective(skip_missing=True) to skip it on such batches)"
        )
