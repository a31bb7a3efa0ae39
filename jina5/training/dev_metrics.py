"""The dev check's measures (``EmbeddingModule.on_validation_epoch_end``): the student's nDCG@10 on the
dev pairs, and, where the dev rows have cached teacher vectors, how close the student is to the teacher
(the cosines the distillation loss compares, the agreement of their pairwise similarities).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor, nn

from jina5.losses import EmbeddingDistillation


def distilled_cosines(distill: EmbeddingDistillation, s: Tensor, t: Tensor) -> Tensor:
    """(B,) cosines the distillation loss compares: cos(psi(s), t) (student side) or cos(s, psi(t))."""
    if distill.side == "student":
        return nn.functional.cosine_similarity(distill.project_student(s), t, dim=-1)
    return nn.functional.cosine_similarity(s, distill.project_teacher(t, s.shape[-1]), dim=-1)


def dev_ndcg_at_10(q: Tensor, d: Tensor) -> Tensor:
    """nDCG@10 of query i retrieving document i among all N dev documents (one relevant each):
    mean_i [rank_i < 10] / log2(rank_i + 2), rank_i = #{j : q_i.d_j > q_i.d_i}."""
    sims = q @ d.T  # (N, N)
    rank = (sims > sims.diagonal().unsqueeze(1)).sum(1).float()
    return torch.where(rank < 10, 1.0 / torch.log2(rank + 2), torch.zeros_like(rank)).mean()


def similarity_agreement(student: Tensor, teacher: Tensor) -> float:
    """Spearman correlation between the student's and the teacher's pairwise cosines (i < j) on the same
    texts: a projection-free measure of how much of the teacher's geometry the student reproduces."""
    s = nn.functional.normalize(student.float(), dim=-1)
    t = nn.functional.normalize(teacher.float(), dim=-1)
    iu = np.triu_indices(s.shape[0], k=1)
    return float(spearmanr((s @ s.T).cpu().numpy()[iu], (t @ t.T).cpu().numpy()[iu]).statistic)
