"""Relational distillation (paper loss 7): keep the student's pairwise geometry close to a reference.

Over all M embeddings of the batch (queries, documents and, if present, hard negatives, stacked):

    D^S_ij = 1 - phi(s_i, s_j),   D^T_ij = 1 - phi(t_i, t_j),   mu = mean_{i,j} D   (over all M^2)
    L_r = (1/M^2) sum_{i,j} (D^S_ij / mu_S - D^T_ij / mu_T)^2

phi = cosine. Dividing by mu makes the loss invariant to a global scale of either distance matrix,
so the student and reference spaces need not share dims or spread. mu is clamped at ``eps``.

The reference t is ``reference="base"``: base_query / base_document (/ base_negatives), the frozen
base model with the adapter off (the paper's classification regulariser, weight 20), or
``reference="teacher"``: teacher_query / teacher_document (/ teacher_negatives). The reference is
detached and never transformed by wrappers (it is a fixed target: Matryoshka truncates only the
student, and mu keeps the two scales comparable).

Negatives: when the batch has student ``negatives`` and ``include_negatives=True`` (default), the
reference's negatives (``base_negatives`` / ``teacher_negatives``) must be present too, else a
ValueError says so; ``include_negatives=False`` uses queries and documents only (M = 2B).

Shapes: student (B, D) x2 [+ (B, K, D)] -> s (M, D); reference (B, Dr) x2 [+ (B, K, Dr)] -> t (M, Dr).
Stacking order: queries, documents, negatives (row-major); padded negatives (``negatives_mask`` False:
ranks with different K, ``jina5.training.distributed``) are left out, so M = 2B + the real negatives. Returns a scalar; 0 when s == t.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jina5.losses._util import cosine_matrix, require
from jina5.losses.batch import EmbeddingBatch

REFERENCES = ("base", "teacher")


def relational_loss_from_distances(dist_s: Tensor, dist_t: Tensor, eps: float = 1e-8) -> Tensor:
    """(M, M), (M, M) distance matrices -> mean((D_S/mu_S - D_T/mu_T)^2), mu = clamp(mean(D), eps)."""
    mu_s = dist_s.mean().clamp_min(eps)
    mu_t = dist_t.mean().clamp_min(eps)
    return (dist_s / mu_s - dist_t / mu_t).pow(2).mean()


class RelationalDistillation(nn.Module):
    """L_r = (1/M^2) sum_ij ((1-cos(s_i,s_j))/mu_S - (1-cos(t_i,t_j))/mu_T)^2; see the module docstring.

    Args:
        reference: "base" (frozen base model, adapter off; the paper's choice) or "teacher".
        include_negatives: stack hard negatives into the M embeddings when the batch has them.
        eps: lower clamp of mu_S and mu_T (a batch of identical vectors has mu = 0).
    """

    def __init__(self, reference: str = "base", include_negatives: bool = True, eps: float = 1e-8) -> None:
        super().__init__()
        if reference not in REFERENCES:
            raise ValueError(
                f"RelationalDistillation reference must be one of {REFERENCES}, got {reference!r}"
            )
        self.reference = reference
        self.include_negatives = include_negatives
        self.eps = eps

    @property
    def requires(self) -> tuple[str, ...]:
        return (f"{self.reference}_query", f"{self.reference}_document")

    def forward(self, batch: EmbeddingBatch) -> Tensor:
        require(batch, self.requires, f"RelationalDistillation(reference={self.reference!r})")
        ref_q, ref_d = (getattr(batch, f) for f in self.requires)
        s = [batch.query, batch.document]
        t = [ref_q, ref_d]
        if self.include_negatives and batch.negatives is not None:
            neg_field = f"{self.reference}_negatives"
            ref_n = getattr(batch, neg_field)
            if ref_n is None:
                raise ValueError(
                    f"RelationalDistillation: the batch has student negatives but {neg_field} is None; "
                    "provide it or set include_negatives=False"
                )
            s.append(batch.real_negatives(batch.negatives))  # padded negatives left out
            t.append(batch.real_negatives(ref_n))
        s_all = torch.cat(s)  # (M, D)
        t_all = torch.cat(t).detach().to(s_all.dtype)  # (M, Dr)
        if t_all.shape[0] != s_all.shape[0]:
            raise ValueError(
                f"RelationalDistillation: {s_all.shape[0]} student vs {t_all.shape[0]} reference embeddings"
            )
        dist_s = 1.0 - cosine_matrix(s_all, s_all)
        dist_t = 1.0 - cosine_matrix(t_all, t_all)
        return relational_loss_from_distances(dist_s, dist_t, self.eps)
