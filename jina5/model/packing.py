"""Packing (unpadding): a padded batch -> fewer rows of concatenated sequences, and back.

    padded ids (B, L) + mask (B, L) --pack--> ids (R, C), positions (R, C), segments (R, C)
    backbone hidden (R, C, H) --unpack--> (B, L, H) (zeros on pads) --pool--> (B, H)

The B sequences (lengths n_b = sum_t mask_bt) are placed into R rows of capacity C = max_b n_b by
first-fit decreasing, so a row holds several whole sequences and pads only its tail; a batch of
documents whose lengths vary pads far less than the (B, L) layout. Rows of capacity C, not one row
of all tokens: with a dense attention mask (eager / SDPA) one row would cost T^2 attention for T
tokens, rows of C cost about T C, no more than the padded batch's B C^2.

Within a row, positions restart at 0 (+ the model's offset) for every sequence and for the tail of
pads (its own segment, so no row of the attention mask is empty). No token may attend across
sequences:
- decoders (causal): the restarting ``position_ids`` and no mask; transformers detects the packed
  sequences from them (``masking_utils.find_packed_sequence_indices``) and builds a block-causal mask
  (eager / SDPA). Not flash attention: its path finds packed sequences from ``position_ids`` only for
  a batch of one row, and our batches have several, so packing refuses it
  (``jina5.model.encoder.check_packing_attention``);
- encoders (bidirectional): a block-diagonal 4D mask, M[r, 0, i, j] = [segment_ri == segment_rj]
  (``block_diagonal_mask``), which transformers takes as is.

``packing: auto`` packs a batch only when the rows it saves, 1 - R / B, are at least
``AUTO_MIN_SAVING``: the padded batch and the packed one compute on B and R rows of the same width, so
that fraction is the compute saved, and below it the packing's own work (index copies, the block mask)
eats the gain.

The padded layout is restored for pooling (``unpack``), so pooling is the padded path's own code
(``jina5.model.pooling.pool``) reading the same per-sequence tokens: mean, cls and last_token all follow
the sequence boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

AUTO = "auto"  # the `packing` setting that packs where it pays (``AUTO_MIN_SAVING``)
AUTO_MIN_SAVING = 0.1  # the fraction of rows packing must save under `packing: auto`


def first_fit_decreasing(lengths: list[int], capacity: int) -> tuple[list[int], list[int], list[int]]:
    """Place sequences of ``lengths`` into rows of ``capacity`` tokens (longest first, each into the
    first row with room). Returns (row of each sequence, its offset in that row, tokens used per row)."""
    row, offset, used = [0] * len(lengths), [0] * len(lengths), []
    for b in sorted(range(len(lengths)), key=lambda i: -lengths[i]):  # stable: ties keep batch order
        r = next((r for r, u in enumerate(used) if u + lengths[b] <= capacity), len(used))
        if r == len(used):
            used.append(0)
        row[b], offset[b] = r, used[r]
        used[r] += lengths[b]
    return row, offset, used


@dataclass
class Packed:
    """A packed batch. ``input_ids``, ``position_ids``, ``segments`` (R, C): token ids, positions
    restarting per sequence, and the sequence index of each slot (-1 on a row's tail of pads);
    ``src`` / ``dest`` (T,): where each real token sits in the flattened padded (B L) and packed
    (R C) layouts; ``shape`` the padded (B, L)."""

    input_ids: Tensor
    position_ids: Tensor
    segments: Tensor
    src: Tensor
    dest: Tensor
    shape: tuple[int, int]


def pack(
    input_ids: Tensor,
    attention_mask: Tensor,
    pad_id: int,
    position_offset: int = 0,
    lengths: Sequence[int] | None = None,
    left_padded: bool | None = None,
    min_saving: float = 0.0,
) -> Packed | None:
    """Pack a padded batch (B, L) (right or left padded: each row's real tokens contiguous) into R rows;
    None when no two sequences share a row (the padded batch is then as small, and its mask simpler), or
    when the fraction of rows saved, 1 - R / B, is below ``min_saving``.

    The placement is planned on the host: from ``lengths`` (each row's real tokens, host ints: the
    collator's, ``jina5.data.collate``) and ``left_padded`` when given, with no read of the mask;
    otherwise from one device-to-host copy of the mask (a device sync). The index tensors then go to
    the batch's device."""
    device = input_ids.device
    b, width = attention_mask.shape
    if lengths is not None:
        if left_padded is None:
            raise ValueError("pack: lengths needs left_padded (where each row's real tokens start)")
        sizes = [int(n) for n in lengths]
        first = torch.tensor([width - n if left_padded else 0 for n in sizes], dtype=torch.long)
    else:
        mask = attention_mask.detach().cpu().long()
        sizes = mask.sum(1).tolist()
        first = mask.argmax(1)  # the first real token
    if 0 in sizes:
        raise ValueError(f"packing: row {sizes.index(0)} of the batch has no tokens")
    capacity = max(sizes)
    row, offset, used = first_fit_decreasing(sizes, capacity)
    lengths = torch.tensor(sizes, dtype=torch.long)
    n_rows = len(used)
    if n_rows == b or 1 - n_rows / b < min_saving:
        return None
    seq = torch.repeat_interleave(torch.arange(b), lengths)  # (T,) sequence of each real token
    j = torch.arange(len(seq)) - (lengths.cumsum(0) - lengths)[seq]  # position within its sequence
    src = seq * width + first[seq] + j
    row_t, offset_t = torch.tensor(row), torch.tensor(offset)
    dest = row_t[seq] * capacity + offset_t[seq] + j
    # tail slots: positions 0, 1, ... from the row's first free slot (their own segment)
    positions = torch.arange(capacity).expand(n_rows, capacity) - torch.tensor(used).unsqueeze(1)
    positions = positions.flatten().index_put((dest,), j).view(n_rows, capacity) + position_offset
    segments = torch.full((n_rows * capacity,), -1).index_put((dest,), seq).view(n_rows, capacity)
    src, dest = src.to(device), dest.to(device)
    ids = torch.full((n_rows * capacity,), pad_id, dtype=input_ids.dtype, device=device)
    ids[dest] = input_ids.flatten()[src]
    return Packed(
        input_ids=ids.view(n_rows, capacity),
        position_ids=positions.to(device),
        segments=segments.to(device),
        src=src,
        dest=dest,
        shape=(b, width),
    )


def block_diagonal_mask(segments: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """(R, C) segment ids -> (R, 1, C, C) mask, token i may attend to j iff they share a segment:
    boolean (``dtype`` None; SDPA) or additive, 0 / finfo(dtype).min (eager attention adds it)."""
    same = (segments.unsqueeze(2) == segments.unsqueeze(1)).unsqueeze(1)
    if dtype is None:
        return same
    return torch.zeros(same.shape, dtype=dtype, device=same.device).masked_fill(~same, torch.finfo(dtype).min)


def unpack(hidden: Tensor, packed: Packed) -> Tensor:
    """Packed hidden states (R, C, H) -> the padded layout (B, L, H), zeros on the pads."""
    b, width = packed.shape
    flat = hidden.reshape(-1, hidden.shape[-1]).index_select(0, packed.dest)
    out = hidden.new_zeros(b * width, hidden.shape[-1]).index_copy(0, packed.src, flat)
    return out.view(b, width, -1)


def check_packing_attention(attn_implementation: str | None) -> None:
    """Refuse packing with any flash-attention implementation (``flash_attention_2``, ``_3``, a hub
    kernel): packing puts several sequences into each of several rows. transformers' flash path finds
    packed sequences from ``position_ids`` only when the batch has one row
    (``modeling_flash_attention_utils._is_packed_sequence``), so with several rows every later sequence of
    a row would attend to the earlier ones; an encoder would also need a block-diagonal mask, which
    flash attention does not take. eager / SDPA build the block mask from the restarting positions."""
    if attn_implementation is not None and "flash" in attn_implementation:
        raise ValueError(
            f"student.packing=true cannot run with student.attn_implementation={attn_implementation}: "
            "packing puts several sequences into each of several rows, and transformers' flash-attention "
            "path separates packed sequences (from position_ids) only when the batch has one row, so "
            "sequences in a row would attend to each other. Set student.packing=false, or "
            "student.attn_implementation=sdpa (or eager), which masks each packed sequence off"
        )
