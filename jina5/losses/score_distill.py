"""Score distillation (paper loss 8; an ablation in the stage-1 objective comparison).

For z in {x (queries), y (documents)}, row-softmax similarity distributions of student and teacher:

    P^S_ij = softmax_j(phi(z_i^S, z_j^S) / tau),   P^T_ij = softmax_j(phi(z_i^T, z_j^T) / tau)
    L = MSE(P^S_x, P^T_x) + MSE(P^S_y, P^T_y),     MSE = mean over the B^2 entries

phi = cosine, tau = 0.02. Teacher vectors are compared only through their own similarities, so no
projection is needed. The paper does not say whether the diagonal (phi(z_i, z_i) = 1) takes part;
at tau = 0.02 it would make both rows nearly one-hot on i and the loss nearly 0 whatever the
geometry, so ``exclude_diagonal=True`` (default) drops j = i from each softmax (its entry is then 0
in both matrices and still counts in the B^2 mean). With B < 2 and the diagonal excluded the loss
is 0.

Shapes: query, document (B, D); teacher_query, teacher_document (B, Dt). Returns a scalar.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jina5.losses._util import cosine_matrix, require
from jina5.losses.batch import EmbeddingBatch


class ScoreDistillation(nn.Module):
    """L = sum_{z in {x,y}} MSE(rowsoftmax(cos(z^S)/tau), rowsoftmax(cos(z^T)/tau)); see the module doc.

    Args:
        temperature: tau (paper: 0.02).
        exclude_diagonal: leave j = i out of each row's softmax (the paper is silent).
    """

    requires: tuple[str, ...] = ("teacher_query", "teacher_document")

    def __init__(self, temperature: float = 0.02, exclude_diagonal: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"ScoreDistillation temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.exclude_diagonal = exclude_diagonal

    def _probs(self, z: Tensor) -> Tensor:
        logits = cosine_matrix(z, z) / self.temperature  # (B, B)
        if self.exclude_diagonal:
            eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
            logits = logits.masked_fill(eye, float("-inf"))
        return logits.softmax(dim=-1)

    def forward(self, batch: EmbeddingBatch) -> Tensor:
        require(batch, self.requires, "ScoreDistillation")
        if self.exclude_diagonal and batch.batch_size < 2:
            return 0.0 * batch.query.sum()
        loss = batch.query.new_zeros(())
        for s, t in ((batch.query, batch.teacher_query), (batch.document, batch.teacher_document)):
            p_t = self._probs(t.detach().to(s.dtype))
            loss = loss + F.mse_loss(self._probs(s), p_t)
        return loss
