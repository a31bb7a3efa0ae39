"""InfoNCE (paper loss 2) and the classification objective (paper loss 6).

q->d, for each query x_i with positive y_i (phi = cosine, tau = temperature):

    L_NCE(q->d) = -(1/B) sum_i log( e^{phi(x_i,y_i)/tau}
                                    / (e^{phi(x_i,y_i)/tau} + sum_{n in N_i} e^{phi(x_i,n)/tau}) )

N_i = the other in-batch documents {y_j : j != i} plus hard negatives: x_i's own K mined negatives
(``share_negatives=False``, the paper's retrieval objective) or every hard negative in the batch, all
B*K of them (``share_negatives=True``).

d->q (``bidirectional=True``) adds the same loss with roles swapped, over in-batch queries only:

    L_NCE(d->q) = -(1/B) sum_i log( e^{phi(y_i,x_i)/tau} / sum_j e^{phi(y_i,x_j)/tau} )

and the loss is the sum L_NCE(q->d) + L_NCE(d->q).

Classification (paper loss 6) is exactly ``InfoNCE(bidirectional=True, share_negatives=True)``:
q->d negatives are every other positive and every hard negative in the batch, d->q uses in-batch
queries only, tau 0.02.

False-negative masking (``mask_duplicates=True``, needs ``document_ids`` / ``query_ids``): an in-batch
document y_j (j != i) whose id equals y_i's id is a duplicate of the positive, so it is removed from
N_i; likewise, for d->q, an in-batch query x_j (j != i) with x_i's id. Hard negatives carry no ids
and are never masked. Without ids nothing is masked. Padded negatives (``negatives_mask`` False: ranks
with different K, ``jina5.training.distributed``) are left out of N_i (logit -inf).

Temperature: fixed (a plain float, exact) unless ``learnable_temperature=True``; then it is stored
as a parameter log(tau), initialised at log(temperature), and tau = exp(log_tau) is clamped to
[min_temperature, max_temperature] (default [0.001, 1.0]: below 0.001 the logits of unit vectors exceed 1000 and the softmax is one-hot
in float16/bfloat16; above 1 the loss no longer separates positives). The clamp is applied in log
space; at a bound the temperature's gradient is zero.

Shapes: query, document (B, D); negatives (B, K, D) or None; negatives_mask (B, K) or None; query_ids, document_ids (B,) or None.
Returns a scalar.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from jina5.losses._util import unit
from jina5.losses.batch import EmbeddingBatch


def _duplicate_mask(ids: Tensor) -> Tensor:
    """(B,) ids -> (B, B) bool, True where ids[i] == ids[j] and i != j."""
    same = ids[:, None] == ids[None, :]
    return same & ~torch.eye(ids.shape[0], dtype=torch.bool, device=ids.device)


def _nce(logits: Tensor) -> Tensor:
    """(B, C) logits whose positive for row i is column i -> mean_i (logsumexp_c logits[i] - logits[i, i]).

    Equals ``F.cross_entropy(logits, arange(B))``; -inf entries (masked) drop out of the sum.
    """
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()


class InfoNCE(nn.Module):
    """InfoNCE q->d with in-batch and hard negatives, optionally + d->q; see the module docstring.

    Args:
        temperature: tau, or its initial value when learnable (paper: 0.02).
        learnable_temperature: optimise log(tau) as a parameter.
        bidirectional: add L_NCE(d->q) over in-batch queries (classification: True).
        share_negatives: every row sees all B*K hard negatives (True) or only its own K (False).
        mask_duplicates: drop in-batch duplicates of the positive (equal ids) from the denominators.
        min_temperature, max_temperature: clamp range of tau.
    """

    requires: tuple[str, ...] = ()

    def __init__(
        self,
        temperature: float = 0.02,
        learnable_temperature: bool = False,
        bidirectional: bool = False,
        share_negatives: bool = False,
        mask_duplicates: bool = True,
        min_temperature: float = 1e-3,
        max_temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0 < min_temperature <= temperature <= max_temperature:
            raise ValueError(
                f"InfoNCE needs 0 < min_temperature <= temperature <= max_temperature, got "
                f"{min_temperature}, {temperature}, {max_temperature}"
            )
        self.bidirectional = bidirectional
        self.share_negatives = share_negatives
        self.mask_duplicates = mask_duplicates
        self.learnable_temperature = learnable_temperature
        self.log_min, self.log_max = math.log(min_temperature), math.log(max_temperature)
        self.fixed_temperature = temperature
        if learnable_temperature:
            self.log_tau = nn.Parameter(torch.tensor(math.log(temperature)))

    def tau(self) -> Tensor:
        """The (clamped) temperature as a 0-d tensor, differentiable when learnable."""
        if not self.learnable_temperature:
            return torch.tensor(self.fixed_temperature, dtype=torch.float64)
        return self.log_tau.clamp(self.log_min, self.log_max).exp()

    @property
    def temperature(self) -> Tensor:
        """Current (clamped) temperature, detached, for logging."""
        return self.tau().detach()

    def log_values(self) -> dict[str, Tensor]:
        return {"temperature": self.temperature}

    def forward(self, batch: EmbeddingBatch) -> Tensor:
        x, y = unit(batch.query), unit(batch.document)  # (B, D)
        tau = self.tau().to(x.dtype) if self.learnable_temperature else self.fixed_temperature
        sim = x @ y.T  # (B, B): sim[i, j] = phi(x_i, y_j)

        # q->d: columns = B in-batch documents, then the hard negatives.
        qd = sim
        if self.mask_duplicates and batch.document_ids is not None:
            qd = qd.masked_fill(_duplicate_mask(batch.document_ids.to(x.device)), float("-inf"))
        columns = [qd]
        if batch.negatives is not None and batch.negatives.shape[1] > 0:
            n, mask = unit(batch.negatives), batch.negatives_mask  # (B, K, D), (B, K) or None
            if self.share_negatives:
                hard = x @ n.reshape(-1, n.shape[-1]).T  # (B, B*K)
                mask = None if mask is None else mask.reshape(1, -1)
            else:
                hard = torch.einsum("bd,bkd->bk", x, n)  # (B, K)
            if mask is not None:  # padding (uneven K across ranks) is no negative
                hard = hard.masked_fill(~mask, float("-inf"))
            columns.append(hard)
        loss = _nce(torch.cat(columns, dim=1) / tau)

        if self.bidirectional:
            dq = sim.T  # (B, B): dq[i, j] = phi(y_i, x_j)
            if self.mask_duplicates and batch.query_ids is not None:
                dq = dq.masked_fill(_duplicate_mask(batch.query_ids.to(x.device)), float("-inf"))
            loss = loss + _nce(dq / tau)
        return loss
