"""Pooling: (B, L, H) hidden states and their (B, L) mask (m, 1 on real tokens) -> (B, H).

- ``mean``:       e = sum_t m_t h_t / sum_t m_t
- ``cls``:        e = h_{first real token}
- ``last_token``: e = h_{last real token} (the EOS for decoders when ``append_eos``)

Each is computed from the mask, so left- and right-padded batches give the same vectors.
"""

from __future__ import annotations

import torch
from torch import Tensor

POOLINGS = ("mean", "cls", "last_token")


def pool(hidden: Tensor, mask: Tensor, mode: str) -> Tensor:
    """Pool (B, L, H) hidden states with a (B, L) mask into (B, H); padding side does not matter."""
    mask_f = mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    if mode == "mean":
        return (hidden * mask_f).sum(1) / mask_f.sum(1).clamp_min(1e-9)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    if mode == "cls":
        index = torch.where(mask.bool(), positions, mask.shape[1]).argmin(1)  # first real token
    elif mode == "last_token":
        index = (positions * mask).argmax(1)  # last real token
    else:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {mode!r}")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
