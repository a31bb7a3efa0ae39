"""Cross-rank pieces of the training step: the world size, the all-gather with gradient, and the
agreement every rank's batch needs before that gather.

The gather concatenates every field of the R ranks' EmbeddingBatches along dim 0, so every rank must
hold the same fields with the same trailing shapes. Two things can differ within one step (every rank
draws the same dataset, ``jina5.data.sampler``): the number K of hard negatives per query (the
collator keeps the smallest count of a rank's rows, and a rank with one row without negatives has
none), and, for a dataset that mixes rows with and without a field (``scores``), whether the field is
present. :func:`gather_batch` agrees on both with one small all_reduce:

    K_max = max_r K_r      (K_r = 0 on a rank without negatives)

and, when the ranks' K differ, pads every rank's negatives to K_max with zero vectors and a (B, K_max)
boolean ``negatives_mask`` (True = a real negative; the losses drop masked-out negatives,
``jina5.losses.batch``). A rank without negatives gets B x K_max padding, attached to the graph by an
exact zero, so the all-gather's backward (a collective) runs on every rank. A field present on some
ranks only raises a ValueError naming it: a hang or a shape error in the collective would not.
When every rank has the same K nothing is padded and no mask is made: the path is the plain gather.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from jina5.losses.batch import EmbeddingBatch

#: the negatives and their per-negative references, padded together along dim 1.
NEGATIVE_FIELDS = ("negatives", "teacher_negatives", "base_negatives")


def world_size() -> int:
    """Processes in the default process group (1 when torch.distributed is not initialised)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def gather_with_grad(x: Tensor | None) -> Tensor | None:
    """Concatenate ``x`` (B, ...) over the R ranks along dim 0 -> (R B, ...), rank order.

    The backward of ``all_gather`` sums every rank's gradient for this rank's slice, and every rank
    computes the same global loss, so after DDP divides the summed gradients by R each parameter gets
    exactly the gradient of the loss on the concatenated global batch."""
    if x is None or world_size() == 1:
        return x
    pieces = torch.distributed.nn.functional.all_gather(x.contiguous())
    return torch.cat([_ContiguousGrad.apply(p) for p in pieces], dim=0)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous. ``all_gather``'s backward sends each
    piece's gradient as it comes; a non-contiguous one (the slice of a gradient that a loss transposed,
    e.g. over (B, K, D) negatives with K > 1) is sent as raw storage: wrong gradients (gloo, torch 2.13).
    (:func:`gather_fields` hands it contiguous pieces already; this keeps any other caller safe.)"""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous()


def exact_zero(x: Tensor) -> Tensor:
    """A 0-d zero attached to ``x``'s graph: the sum of an empty slice, so exactly 0 even where ``x``
    holds inf or NaN (``0 * x`` would not be), and its gradient to ``x`` is zeros."""
    return x.reshape(-1)[:0].sum()


def gather_batch(batch: EmbeddingBatch) -> EmbeddingBatch:
    """Every rank's ``batch`` concatenated in rank order (:func:`gather_with_grad` per field), after the
    ranks agree on the fields present and on K; see the module docstring."""
    fields = [f.name for f in dataclasses.fields(EmbeddingBatch)]
    present = [getattr(batch, f) is not None for f in fields]
    k = 0 if batch.negatives is None else batch.negatives.shape[1]
    # one all_reduce(MAX) of [K, -K, present, -present]: max and min of K and of each presence flag
    flags = torch.tensor(
        [k, -k, *present, *(-int(p) for p in present)], dtype=torch.int64, device=batch.document.device
    )
    torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
    agreed = flags.tolist()  # one read to the host (one device sync), not one per flag
    k_max, k_min = agreed[0], -agreed[1]
    n = len(fields)
    anywhere = dict(zip(fields, (v == 1 for v in agreed[2 : 2 + n]), strict=True))
    everywhere = dict(zip(fields, (v == -1 for v in agreed[2 + n :]), strict=True))
    padded = (*NEGATIVE_FIELDS, "negatives_mask")
    uneven = [f for f in fields if anywhere[f] != everywhere[f] and f not in padded]
    if uneven:
        raise ValueError(
            f"batch fields {uneven} are present on some ranks and missing on others in the same step "
            "(a dataset mixing rows with and without them): give every row of the dataset these fields, "
            "or none"
        )
    if k_max != k_min or anywhere["negatives_mask"]:
        batch = pad_negatives(batch, k_max, [f for f in NEGATIVE_FIELDS if anywhere[f]])
    return EmbeddingBatch(**gather_fields({f: getattr(batch, f) for f in fields}))


def gather_fields(tensors: dict[str, Tensor | None]) -> dict[str, Tensor | None]:
    """:func:`gather_with_grad` of every tensor (each (B, ...)), in one all-gather per (dtype,
    requires_grad) group: each group's tensors are flattened to (B, -1), concatenated, gathered and
    split back. One autograd collective for all the trained vectors keeps the backward's collectives
    in the same order on every rank (per-field gathers may run their backwards in a different order
    where the ranks' graphs differ, e.g. one rank padded its negatives: same-shape gradients would be
    exchanged crosswise). Every rank must hold the same fields with the same shapes."""
    groups: dict[tuple[torch.dtype, bool], list[str]] = {}
    for name, x in tensors.items():
        if x is not None:
            groups.setdefault((x.dtype, x.requires_grad), []).append(name)
    out: dict[str, Tensor | None] = dict.fromkeys(tensors)
    for names in groups.values():
        parts = [tensors[n] for n in names]
        b = parts[0].shape[0]
        flat = gather_with_grad(torch.cat([x.reshape(b, -1) for x in parts], dim=1))
        widths = [x[0].numel() for x in parts]
        for name, x, piece in zip(names, parts, flat.split(widths, dim=1), strict=True):
            out[name] = piece.reshape(-1, *x.shape[1:])
    return out


def pad_negatives(batch: EmbeddingBatch, k: int, fields: list[str]) -> EmbeddingBatch:
    """``batch`` with the ``fields`` (of :data:`NEGATIVE_FIELDS`) padded along dim 1 to ``k`` negatives
    per query with zero vectors, and ``negatives_mask`` (B, k): the batch's own mask (all True without
    one), False on the padding. A field this rank lacks (it has no negatives) becomes B x k zeros of
    the width of its per-row counterpart (``document``, ``teacher_document``, ``base_document``)."""
    b = batch.batch_size
    mask = batch.negatives_mask
    if mask is None:
        have = 0 if batch.negatives is None else batch.negatives.shape[1]
        mask = torch.ones(b, have, dtype=torch.bool, device=batch.document.device)
    changes: dict[str, Tensor] = {"negatives_mask": _pad(mask, k)}
    widths = {
        "negatives": batch.document,
        "teacher_negatives": batch.teacher_document,
        "base_negatives": batch.base_document,
    }
    for name in fields:
        x = getattr(batch, name)
        if x is None:  # this rank has no negatives: B x 0 of the width of its per-row counterpart
            like = widths[name]
            x = like.new_zeros(b, 0, like.shape[-1])
            if name == "negatives":  # in the graph, so the gather's backward runs on this rank too
                x = x + exact_zero(batch.document)
        changes[name] = _pad(x, k)
    return batch.replace(**changes)


def _pad(x: Tensor, k: int) -> Tensor:
    """(B, K, ...) -> (B, k, ...) with zeros (False) appended along dim 1; ``x`` itself when K == k."""
    if x.shape[1] == k:
        return x
    fill = x.new_zeros(x.shape[0], k - x.shape[1], *x.shape[2:])
    return torch.cat([x, fill], dim=1)


@torch.no_grad()
def broadcast_from_rank0(params) -> None:
    """Overwrite every rank's ``params`` (tensors, on the device the process group's backend takes) in
    place with global rank 0's, one broadcast each: the ranks then agree bit for bit."""
    for p in params:
        torch.distributed.broadcast(p.data, src=0)
