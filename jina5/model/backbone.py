"""The Hugging Face backbone of an ``Encoder``: built from its source (a model object, a ``tiny:`` toy,
a local, bundled or hub model; ``jina5.assets``), and pruned to a subset of its transformer blocks.

Layer pruning (``keep_layers``) keeps a chosen subset of the transformer blocks, in order, with their
weights (DistilBERT-style initialisation of a smaller student).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel

from jina5.assets import resolve_model
from jina5.model.io import backbone_load_kwargs
from jina5.model.rope import set_rope_theta

# How the error for a backbone without RoPE names the setting (jina5.model.rope.check_rope).
ROPE_KEY = "rope_theta (student.rope_theta in a training config)"


def load_backbone(
    source: str | nn.Module,
    tokenizer: Any,
    attn_implementation: str | None,
    torch_dtype: str | None,
    rope_theta: float | None,
) -> tuple[nn.Module, Any, str]:
    """(backbone, tokenizer, source name) of ``Encoder(source, ...)``: a ready model (a
    ``PreTrainedModel``, or a ``jina5.model.graph_runtime.GraphBackbone``) with its ``tokenizer``;
    ``tiny:<model_type>``, a random-init toy backbone (smoke tests); else the model
    ``jina5.assets.resolve_model`` finds, built with ``attn_implementation``, ``torch_dtype`` and
    ``rope_theta`` (None: the config's) and with ``tokenizer`` or its own."""
    if isinstance(source, nn.Module):
        if tokenizer is None:
            raise ValueError("a model object needs its tokenizer")
        if rope_theta is not None:
            raise ValueError("rope_theta applies where the encoder builds its backbone, not to a built model")
        return source, tokenizer, getattr(source.config, "_name_or_path", "") or "in-memory"
    if source.startswith("tiny:"):  # "tiny:<model_type>": a random-init toy backbone (smoke tests)
        from jina5.model.tiny import tiny_model_and_tokenizer

        backbone, tokenizer = tiny_model_and_tokenizer(
            source.removeprefix("tiny:"),
            attn_implementation=attn_implementation or "eager",
            rope_theta=rope_theta,
            rope_key=ROPE_KEY,
        )
        return backbone, tokenizer, source
    path = resolve_model(source)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if torch_dtype:
        kwargs["dtype"] = getattr(torch, torch_dtype)
    kwargs.update(backbone_load_kwargs(path))
    if rope_theta is not None:  # into the config the model is built from (its rotary buffers)
        kwargs["config"] = AutoConfig.from_pretrained(path)
        set_rope_theta(kwargs["config"], rope_theta, ROPE_KEY)
    backbone = AutoModel.from_pretrained(path, **kwargs)
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
    return backbone, tokenizer, source


def transformer_layers(model: nn.Module) -> tuple[nn.Module, str]:
    """The (parent, attribute) holding the ModuleList of transformer blocks of a HF backbone."""
    for path in ("encoder.layer", "layers", "model.layers", "encoder.layers", "transformer.h"):
        parent, *_ = [model]
        parts = path.split(".")
        ok = True
        for p in parts[:-1]:
            parent = getattr(parent, p, None)
            if parent is None:
                ok = False
                break
        if ok and isinstance(getattr(parent, parts[-1], None), nn.ModuleList):
            return parent, parts[-1]
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__}")


def prune_layers(model: PreTrainedModel, keep: Sequence[int]) -> None:
    """Keep only the blocks ``keep`` (in this order) and update the config to match."""
    parent, attr = transformer_layers(model)
    layers = getattr(parent, attr)
    n = len(layers)
    if not keep or any(not 0 <= i < n for i in keep) or len(set(keep)) != len(keep):
        raise ValueError(f"keep_layers={list(keep)} must be distinct indices in [0, {n})")
    setattr(parent, attr, nn.ModuleList([layers[i] for i in keep]))
    for new_idx, layer in enumerate(getattr(parent, attr)):
        attn = getattr(layer, "self_attn", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = new_idx
    model.config.num_hidden_layers = len(keep)
    layer_types = getattr(model.config, "layer_types", None)
    if layer_types is not None and len(layer_types) == n:
        model.config.layer_types = [layer_types[i] for i in keep]
