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

The adapter lifecycle on an encoder is ``TaskAdapters`` (a mixin of ``jina5.model.encoder.Encoder``):
``add_adapter(task, lora_config)`` wraps the backbone in a peft ``PeftModel`` holding one LoRA adapter
per task over ONE copy of the frozen weights; ``set_task`` / ``using_task`` switch adapter (peft
``set_adapter``, no reload) and with it the prompts (``task_prompts[task]``); ``adapters_disabled()``
gives the stage-1 model back (the frozen reference); ``merged(task)`` is a plain encoder with that
adapter merged into the weights (what ``jina5.export`` writes for sentence-transformers);
``for_task(task)`` is a ``TaskEncoder`` view bound to one adapter.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # peft is imported only when an adapter is built (this module's tables stay cheap)
    import numpy as np
    from peft import LoraConfig
    from torch import nn
    from transformers import PreTrainedModel

    from jina5.model.encoder import Encoder

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
#: ``dense`` (its [CLS] pooler, also ``dense``, is removed by Encoder).
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


def is_peft(model: nn.Module) -> bool:
    """Whether ``model`` is a peft ``PeftModel`` (peft cannot have made one if it was never imported)."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


class TaskAdapters:
    """The task-adapter lifecycle of ``jina5.model.encoder.Encoder`` (see the module docstring).

    Reads and sets the encoder's ``backbone`` (a plain ``PreTrainedModel`` until the first adapter, then
    a ``PeftModel``), ``task`` (the active adapter, None without adapters), ``task_prompts`` and
    ``_trainable_adapters`` (adapters loaded or added for training; the others run in inference mode).
    """

    backbone: nn.Module
    task: str | None
    task_prompts: dict[str, dict[str, str]]
    _trainable_adapters: set[str]

    @property
    def adapters(self) -> list[str]:
        """Names of the task adapters on the backbone (empty for a plain model)."""
        return list(self.backbone.peft_config) if is_peft(self.backbone) else []

    def _require_adapter(self, task: str, where: str = "") -> None:
        if task not in self.adapters:
            raise KeyError(f"{where}no adapter {task!r}; adapters: {self.adapters}")

    def _require_new_adapter(self, task: str) -> None:
        if task in self.adapters:
            raise ValueError(f"adapter {task!r} exists already (adapters: {self.adapters})")

    def add_adapter(
        self, task: str, config: LoraConfig, prompts: dict[str, str] | None = None, trainable: bool = True
    ) -> None:
        """Add a fresh LoRA adapter ``task`` (peft ``LoraConfig``; B = 0, so the model is unchanged) and
        activate it. Every backbone weight stays frozen; only the adapter's A, B are trainable."""
        self._require_new_adapter(task)
        if is_peft(self.backbone):
            self.backbone.add_adapter(task, config)
        else:
            from peft import get_peft_model

            self.backbone = get_peft_model(self.backbone, config, adapter_name=task)
        if prompts is not None:
            self.task_prompts[task] = dict(prompts)
        if trainable:
            self._trainable_adapters.add(task)
        self.set_task(task)

    def load_adapter(self, path: str | Path, task: str, trainable: bool = False) -> None:
        """Load a peft adapter directory (``adapter_config.json`` + weights) as adapter ``task``."""
        from peft import PeftModel

        self._require_new_adapter(task)
        if is_peft(self.backbone):
            self.backbone.load_adapter(str(path), adapter_name=task, is_trainable=trainable)
        else:
            self.backbone = PeftModel.from_pretrained(
                self.backbone, str(path), adapter_name=task, is_trainable=trainable
            )
        if trainable:
            self._trainable_adapters.add(task)
        self.set_task(task)

    def set_task(self, task: str) -> None:
        """Activate adapter ``task`` (and its prompts); the backbone is not reloaded."""
        self._require_adapter(task)
        self.backbone.set_adapter(task, inference_mode=task not in self._trainable_adapters)
        self.task = task

    @contextlib.contextmanager
    def using_task(self, task: str | None) -> Iterator[None]:
        """Activate adapter ``task`` inside the block, then the previous one again (None: no change)."""
        previous = self.task
        if task is not None and task != previous:
            self.set_task(task)
        try:
            yield
        finally:
            if previous is not None and self.task != previous:
                self.set_task(previous)

    @contextlib.contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        """Inside the block the backbone runs without any adapter: the stage-1 (base) model."""
        if not is_peft(self.backbone):
            yield
            return
        with self.backbone.disable_adapter():
            yield

    def for_task(self: Encoder, task: str) -> TaskEncoder:
        """A view whose ``encode`` always uses adapter ``task`` (for APIs that only pass ``prompt``)."""
        self._require_adapter(task)
        return TaskEncoder(self, task)

    def merged(self: Encoder, task: str) -> Encoder:
        """A plain encoder of this class (no peft) with adapter ``task`` merged into the weights,
        W' = W + (alpha / r) B A, and the task's prompts as its prompts. This encoder is unchanged."""
        self._require_adapter(task)
        peft_copy = copy.deepcopy(self.backbone)
        peft_copy.set_adapter(task)
        model = peft_copy.merge_and_unload(adapter_names=[task])
        model.eval()
        enc = type(self)(
            model,
            tokenizer=self.tokenizer,
            pooling=self.pooling,
            prompts=self.prompts_for(task),
            max_length=self.max_length,
            append_eos=self.append_eos,
            padding_side=self.tokenizer.padding_side,
            normalize=self.normalize,
        )
        enc.source = f"{self.source}+{task}"
        enc.tokenizer_appends_eos = self.tokenizer_appends_eos
        return enc

    def base_model(self) -> PreTrainedModel:
        """The backbone without adapters (a copy when adapters exist; the backbone itself otherwise)."""
        return copy.deepcopy(self.backbone).unload() if is_peft(self.backbone) else self.backbone


class TaskEncoder:
    """An ``Encoder`` bound to one adapter: ``encode(texts, prompt=...)`` always uses ``task``.

    Has the attributes evaluation code reads from an encoder (``prompts``, ``dim``, ``backbone``,
    ``compute_precision``, ``encoder_config()`` with the task in it, so fingerprints differ per task).
    """

    def __init__(self, encoder: Encoder, task: str) -> None:
        self.encoder, self.task = encoder, task

    @property
    def prompts(self) -> dict[str, str]:
        return self.encoder.prompts_for(self.task)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def backbone(self) -> nn.Module:
        return self.encoder.backbone

    @property
    def source(self) -> str:
        return f"{self.encoder.source}+{self.task}"

    def encoder_config(self) -> dict:
        return {**self.encoder.encoder_config(), "task": self.task}

    @property
    def compute_precision(self) -> str:
        """The encoder's (bf16 or fp32): part of the fingerprint, like ``encoder_config``."""
        return self.encoder.compute_precision

    def parameters(self):
        return self.encoder.parameters()

    def encode(self, texts: str | Sequence[str], prompt: str | None = None, **kwargs) -> np.ndarray:
        return self.encoder.encode(texts, prompt=prompt, task=self.task, **kwargs)
