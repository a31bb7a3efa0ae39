"""CoSENT (paper loss 5): a ranking loss on graded pairs (x_i, y_i, s_i).

    L = log(1 + sum_{(i, j): s_i > s_j} exp((phi(x_j, y_j) - phi(x_i, y_i)) / tau'))

phi = cosine, tau' = 0.05 (the paper's printed formula is garbled; this standard form, as in
sentence-transformers' CoSENTLoss with scale 1/tau' = 20, is meant). Every pair the gold scores rank
s_i > s_j is penalised by how far the model's cosine of pair j exceeds that of pair i. Computed as
logsumexp over {0} and all such terms, so it is stable for any tau'. With no ordered pair (all
scores equal) the loss is log(1) = 0.

Shapes: query, document (B, D); scores (B,). Returns a scalar.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jina5.losses._util import require, unit
from jina5.losses.batch import EmbeddingBatch


class CoSENT(nn.Module):
    """L = log(1 + sum_{s_i > s_j} exp((cos_j - cos_i)/tau')); see the module docstring.

    Args:
        temperature: tau' (paper: 0.05).
    """

    requires: tuple[str, ...] = ("scores",)

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"CoSENT temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, batch: EmbeddingBatch) -> Tensor:
        require(batch, self.requires, "CoSENT")
        cos = (unit(batch.query) * unit(batch.document)).sum(-1)  # (B,)
        s = batch.scores.to(cos.device)
        diff = (cos[None, :] - cos[:, None]) / self.temperature  # diff[i, j] = (cos_j - cos_i) / tau'
        ordered = s[:, None] > s[None, :]  # s_i > s_j
        terms = diff.masked_fill(~ordered, float("-inf")).flatten()
        return torch.logsumexp(torch.cat([terms.new_zeros(1), terms]), dim=0)
