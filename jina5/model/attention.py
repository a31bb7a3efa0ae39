"""The attention implementation of a training forward when the setting is auto (``attn_implementation``
None): eager instead of SDPA while training on a CPU with attention dropout.

torch's CPU SDPA kernels (flash attention for CPU) take no dropout, so with attention dropout on SDPA
falls back to its math path: the same operations as eager attention (QK^T / sqrt(d) + mask, softmax,
dropout, times V) with extra copies, so eager is faster (6-10% of the embedded default student's
bf16 step). Both draw the same dropout mask from the same random stream (one ``dropout`` over the
(B, heads, L, L) probabilities), so the embeddings and gradients are equal to float rounding, with
dropout on (``tests/unit/model/test_speed_paths.py``). Without dropout (evaluation) SDPA runs its fused
kernel and stays.
"""

from __future__ import annotations

import torch
from transformers import PretrainedConfig


def attention_dropout(config: PretrainedConfig) -> float:
    """The backbone's attention-probability dropout: ``attention_probs_dropout_prob`` (BERT, MPNet) or
    ``attention_dropout`` (Qwen3, EuroBERT), 0 when it has neither."""
    for key in ("attention_probs_dropout_prob", "attention_dropout"):
        value = getattr(config, key, None)
        if value is not None:
            return float(value)
    return 0.0


def auto_attention(
    config: PretrainedConfig, built: str | None, training: bool, device: torch.device
) -> str | None:
    """The implementation for a forward in ``training`` mode on ``device`` of a backbone built with
    ``built``: eager where ``built`` is SDPA, on a CPU, training with attention dropout; else ``built``."""
    if built == "sdpa" and training and device.type == "cpu" and attention_dropout(config) > 0:
        return "eager"
    return built
