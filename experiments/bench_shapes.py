"""The student shapes that experiments/bench_gpu.py times, and their inputs: a random-init backbone of
each (no downloads), collator-shaped batches of random tokens, and the analytic FLOPs of a training step
(bench_gpu.py's docstring derives them). Imports torch and transformers only: no Hydra, omegaconf or faiss
(the GPU machine has none of them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel


@dataclass
class Shape:
    """A student architecture and the padding side / pooling of its jina5 config."""

    model_type: str
    config: dict
    padding_side: str
    pooling: str = "last_token"


SHAPES = {
    "small": Shape(  # Qwen/Qwen3-0.6B-Base config.json
        "qwen3",
        dict(
            hidden_size=1024,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
            intermediate_size=3072,
            vocab_size=151936,  # the embedding table (151,669 tokens in the tokenizer)
            rope_theta=1_000_000.0,
            max_position_embeddings=32768,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
        ),
        padding_side="left",
    ),
    "nano": Shape(  # EuroBERT/EuroBERT-210m config.json
        "eurobert",
        dict(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            num_key_value_heads=12,
            intermediate_size=3072,
            vocab_size=128256,
            rope_theta=250_000.0,
            max_position_embeddings=8192,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
        ),
        padding_side="right",
    ),
}
SMOKE_CONFIG = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    intermediate_size=64,
    vocab_size=128,
)


def build_backbone(shape: Shape, device: torch.device, smoke: bool, attn: str | None) -> nn.Module:
    """A random-init backbone of ``shape`` (attention ``attn``, None: transformers' default), fp32, on
    ``device``."""
    values = {**shape.config, **(SMOKE_CONFIG if smoke else {})}
    if shape.model_type == "eurobert":
        values["num_key_value_heads"] = values["num_attention_heads"]
        values.pop("head_dim", None)
    config = AutoConfig.for_model(
        shape.model_type, pad_token_id=0, bos_token_id=None, eos_token_id=None, **values
    )
    if shape.model_type == "eurobert":
        config.mask_token_id = 1
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModel.from_config(config, **({"attn_implementation": attn} if attn else {})).train()


def padded(lengths: list[int], side: str, vocab: int, generator: torch.Generator) -> dict[str, Tensor]:
    """Random token ids (2..vocab) of ``lengths``, padded (pad id 0) on ``side`` to the longest."""
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        cols = slice(width - n, width) if side == "left" else slice(0, n)
        ids[row, cols] = torch.randint(2, vocab, (n,), generator=generator)
        mask[row, cols] = 1
    return {"input_ids": ids, "attention_mask": mask}


def make_batch(
    shape: Shape, lengths: tuple[list[int], list[int]], vocab: int, teacher_dim: int, device: torch.device
) -> dict:
    """A collator-shaped batch (``jina5.data.collate.PairCollator``) with random teacher vectors."""
    g = torch.Generator().manual_seed(0)
    q_len, d_len = lengths
    b = len(q_len)
    batch = {
        "dataset": "bench",
        "query": padded(q_len, shape.padding_side, vocab, g),
        "document": padded(d_len, shape.padding_side, vocab, g),
        "negatives": None,
        "teacher_query": torch.randn(b, teacher_dim, generator=g),
        "teacher_document": torch.randn(b, teacher_dim, generator=g),
        "scores": None,
        "query_ids": torch.arange(b),
        "document_ids": torch.arange(b, 2 * b),
    }
    return to_device(batch, device)


def to_device(x, device: torch.device):
    if isinstance(x, Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    return x


def step_flops(model: nn.Module, lengths: list[int]) -> float:
    """Forward + backward FLOPs of ``lengths`` sequences: sum_n 6 N n + 12 l a n^2 (bench_gpu.py docstring)."""
    c = model.config
    n_params = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    width = c.num_attention_heads * (getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads)
    return float(sum(6 * n_params * n + 12 * c.num_hidden_layers * width * n * n for n in lengths))
