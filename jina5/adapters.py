"""Stage 2: task adapters, in one place: task names, evaluation routing, LoRA settings per architecture.

One LoRA adapter per task sits on the frozen stage-1 student (paper: rank 32, alpha 32, dropout 0.1, on
every linear layer of attention and MLP). For a frozen weight W (out, in) an adapter adds a low-rank
update, only A and B being trained:

    h = W x + (alpha / r) * B A dropout(x),     A (r, in) random,  B (out, r) = 0 at init

so a fresh adapter leaves the model exactly as it was (B = 0), and switching adapters only swaps A, B.

``EVAL_TASK_TO_ADAPTER`` routes an evaluation task type to the adapter that serves it; the evaluation
suite reads it from here. ``DEFAULT_TASK_PROMPTS`` are the paper's prefixes per adapter: retrieval
encodes queries with ``Query: `` and documents with ``Document: ``; every other task encodes every
text with ``Document: `` (both prompt names map to it, so callers need not know the rule).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # peft is imported only when an adapter is built (this module's tables stay cheap)
    from peft import LoraConfig

log = logging.getLogger(__name__)

ADAPTER_TASKS: tuple[str, ...] = ("retrieval", "text-matching", "clustering", "classification")

#: evaluation task type (jina5.eval.task_types.TASK_TYPES) -> the adapter that encodes it
EVAL_TASK_TO_ADAPTER: dict[str, str] = {
    "retrieval": "retrieval",
    "sts": "text-matching",
    "clustering": "clustering",
    "classification": "classification",
}

#: the paper's prefixes per adapter, as named prompts (query / document)
DEFAULT_TASK_PROMPTS: dict[str, dict[str, str]] = {
    "retrieval": {"query": "Query: ", "document": "Document: "},
    "text-matching": {"query": "Document: ", "document": "Document: "},
    "clustering": {"query": "Document: ", "document": "Document: "},
    "classification": {"query": "Document: ", "document": "Document: "},
}

#: LoRA target modules per architecture family (peft matches module-name suffixes): every linear layer
#: of attention and MLP. BERT's attention output, intermediate and output layers are all called
#: ``dense`` (its [CLS] pooler, also ``dense``, is removed by StudentEncoder).
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    "bert": ["query", "key", "value", "dense"],
    "mpnet": ["q", "k", "v", "o", "dense"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "eurobert": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def adapter_for_eval_task(task_type: str) -> str:
    """The adapter that serves evaluation task type ``task_type`` (KeyError naming the known types)."""
    try:
        return EVAL_TASK_TO_ADAPTER[task_type]
    except KeyError:
        raise KeyError(
            f"no adapter for evaluation task type {task_type!r}; known: {sorted(EVAL_TASK_TO_ADAPTER)}"
        ) from None


def check_task(task: str) -> str:
    if task not in ADAPTER_TASKS:
        raise ValueError(f"adapter task must be one of {ADAPTER_TASKS}, got {task!r}")
    return task


def target_modules_for(model_type: str, table: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The LoRA target module names for a backbone of ``model_type`` (``table`` overrides the default)."""
    table = dict(DEFAULT_TARGET_MODULES if table is None else table)
    if model_type not in table:
        raise KeyError(
            f"no LoRA target modules for architecture {model_type!r}; add it under adapter.target_modules "
            f"(known: {sorted(table)})"
        )
    return list(table[model_type])


def lora_config(
    model_type: str,
    rank: int = 32,
    alpha: float = 32,
    dropout: float = 0.1,
    target_modules: Mapping[str, Sequence[str]] | None = None,
    bias: str = "none",
) -> LoraConfig:
    """peft ``LoraConfig`` for one task adapter on a ``model_type`` backbone (B initialised to 0)."""
    from peft import LoraConfig

    if rank < 1:
        raise ValueError(f"adapter.rank must be >= 1, got {rank}")
    if not 0 <= dropout < 1:
        raise ValueError(f"adapter.dropout must be in [0, 1), got {dropout}")
    return LoraConfig(
        r=int(rank),
        lora_alpha=alpha,
        lora_dropout=float(dropout),
        bias=bias,
        target_modules=target_modules_for(model_type, target_modules),
        init_lora_weights=True,
    )


def adapter_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``lora_config`` kwargs of an ``adapter`` config node (conf/adapter/lora.yaml)."""
    keys = ("rank", "alpha", "dropout", "target_modules", "bias")
    return {k: cfg[k] for k in keys if k in cfg and cfg[k] is not None}
