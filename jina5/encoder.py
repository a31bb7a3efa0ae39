"""StudentEncoder: a Hugging Face backbone + pooling + L2 normalisation, and THE inference API.

    texts --tokenise (+ prefix)--> ids (B, L) --backbone--> hidden (B, L, H) --pool--> (B, H) --L2--> (B, H)

Pooling (m = attention mask, 1 on real tokens):
- ``mean``:       e = sum_t m_t h_t / sum_t m_t
- ``cls``:        e = h_{first real token}
- ``last_token``: e = h_{last real token} (the EOS for decoders when ``append_eos``)
Each is computed from the mask, so left- and right-padded batches give the same vectors; position ids
are passed explicitly from the mask for the same reason (a left-padded decoder would otherwise shift
every position).

Layer pruning (``keep_layers``) keeps a chosen subset of the transformer blocks, in order, with their
weights (DistilBERT-style initialisation of a smaller student): the embedded default student is
all-MiniLM-L6-v2 with layers (0, 2, 4) kept.

Task adapters (stage 2, see ``jina5.adapters``): ``add_adapter(task, lora_config)`` wraps the backbone
in a peft ``PeftModel`` holding one LoRA adapter per task over ONE copy of the frozen weights;
``encode(texts, task=, prompt=)`` switches adapter (peft ``set_adapter``, no reload) and prefixes
(``task_prompts[task]``: the paper's ``Query: ``/``Document: `` for retrieval, ``Document: `` for every
other task). ``adapters_disabled()`` gives the stage-1 model back (the frozen reference). A directory
saved with adapters holds the base weights (un-merged) plus ``adapters/<task>/`` (peft format);
``from_pretrained`` restores every adapter. ``merged(task)`` is a plain encoder with that adapter
merged into the weights (what ``jina5.export`` writes for sentence-transformers).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel

from jina5.assets import resolve_model
from jina5.quantize import quantize

log = logging.getLogger(__name__)

POOLINGS = ("mean", "cls", "last_token")
JINA5_CONFIG = "jina5_encoder.json"
ADAPTERS_DIR = "adapters"  # <encoder dir>/adapters/<task>/{adapter_config.json, adapter_model.safetensors}
# Encoders whose learned position table reserves 0..padding_idx: positions start at padding_idx + 1.
_OFFSET_POSITION_MODELS = ("mpnet", "roberta", "xlm-roberta", "camembert")


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


def no_pooler_kwargs(path: str | Path) -> dict:
    """``{"add_pooling_layer": False}`` where the backbone class takes it (BERT, MPNet, RoBERTa...).

    Our exports are saved without the unused [CLS] pooler; building the model without one avoids a
    report of "missing" pooler weights on every load.
    """
    config = AutoConfig.from_pretrained(path)
    model_class = AutoModel._model_mapping.get(type(config), None)
    takes_it = (
        model_class is not None and "add_pooling_layer" in inspect.signature(model_class.__init__).parameters
    )
    return {"add_pooling_layer": False} if takes_it else {}


VOLATILE_CONFIG = ("_name_or_path", "transformers_version", "_attn_implementation_autoset")


def content_fingerprint(
    encoder: StudentEncoder,
    skip_settings: Sequence[str] = ("source",),
    skip_config: Sequence[str] = VOLATILE_CONFIG,
) -> str:
    """sha256 over the backbone config (less ``skip_config``), the encoder settings (less
    ``skip_settings``) and every weight's bytes: the same model loaded from anywhere hashes the same."""
    h = hashlib.sha256()
    cfg = encoder.backbone.config.to_dict()
    for key in skip_config:
        cfg.pop(key, None)
    settings = {k: v for k, v in encoder.encoder_config().items() if k not in skip_settings}
    h.update(json.dumps([cfg, settings], sort_keys=True, default=str).encode())
    for name, tensor in encoder.backbone.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class StudentEncoder(nn.Module):
    """HF backbone + pooling + normalisation, with named prompts (prefixes) and ``encode``.

    Args:
        source: local dir, hub id, or ``bundled:<hub id>`` (see ``jina5.assets``); ``tiny:<model_type>``
            for a random-init toy backbone (bert, mpnet, qwen3, eurobert; code-path tests only); or a
            ready ``PreTrainedModel`` with ``tokenizer``.
        pooling: ``mean | cls | last_token``.
        prompts: named prefixes, e.g. ``{"query": "Query: ", "document": "Document: "}``.
        keep_layers: indices of the blocks to keep (None keeps all).
        max_length: tokens per text (truncation), prefix included.
        append_eos: append the EOS token after truncation (decoders with last-token pooling).
        padding_side: ``right | left``; the vectors do not depend on it.
        normalize: L2-normalise the pooled vector.
        task_prompts: per-adapter prompts, ``{task: {prompt name: prefix}}``; used instead of ``prompts``
            while that task's adapter is active (see ``jina5.adapters.DEFAULT_TASK_PROMPTS``).
    """

    def __init__(
        self,
        source: str | PreTrainedModel,
        pooling: str = "mean",
        prompts: dict[str, str] | None = None,
        keep_layers: Sequence[int] | None = None,
        max_length: int = 256,
        append_eos: bool = False,
        padding_side: str = "right",
        normalize: bool = True,
        tokenizer=None,
        attn_implementation: str | None = None,
        torch_dtype: str | None = None,
        task_prompts: dict[str, dict[str, str]] | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if isinstance(source, PreTrainedModel):
            if tokenizer is None:
                raise ValueError("a model object needs its tokenizer")
            self.backbone = source
            self.source = getattr(source.config, "_name_or_path", "") or "in-memory"
        elif source.startswith("tiny:"):  # "tiny:<model_type>": a random-init toy backbone (smoke tests)
            from jina5.tiny import tiny_model_and_tokenizer

            self.backbone, tokenizer = tiny_model_and_tokenizer(source.removeprefix("tiny:"))
            self.source = source
        else:
            path = resolve_model(source)
            kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
            if torch_dtype:
                kwargs["dtype"] = getattr(torch, torch_dtype)
            if (Path(path) / JINA5_CONFIG).exists():
                kwargs.update(no_pooler_kwargs(path))
            self.backbone = AutoModel.from_pretrained(path, **kwargs)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
            self.source = source
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token is None:  # decoders often have none
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = padding_side
        if getattr(self.backbone, "pooler", None) is not None:
            # BERT-style [CLS] pooler: unused by our pooling (and by DDP's gradients)
            self.backbone.pooler = None
        if keep_layers is not None:
            prune_layers(self.backbone, list(keep_layers))
        self.pooling = pooling
        self.prompts = dict(prompts or {})
        self.task_prompts = {t: dict(p) for t, p in (task_prompts or {}).items()}
        self.task: str | None = None  # the active adapter (None: no adapters)
        self._trainable_adapters: set[str] = set()
        self.max_length = max_length
        self.append_eos = append_eos
        self.normalize = normalize
        model_type = self.backbone.config.model_type
        self._position_offset = (
            self.backbone.config.pad_token_id + 1 if model_type in _OFFSET_POSITION_MODELS else 0
        )
        self._accepts_positions = "position_ids" in inspect.signature(self.backbone.forward).parameters

    # ------------------------------------------------------------------ training path
    @property
    def dim(self) -> int:
        return self.backbone.config.hidden_size

    def position_ids(self, mask: Tensor) -> Tensor:
        """Positions counted over real tokens only: (B, L) = cumsum(mask) - 1 (+ offset), pads at offset."""
        pos = (mask.cumsum(1) - 1).clamp_min(0) * mask
        return pos + self._position_offset if self._position_offset else pos

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, L) token ids and mask -> (B, H) pooled (and L2-normalised) embeddings."""
        kwargs = {"position_ids": self.position_ids(attention_mask)} if self._accepts_positions else {}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        emb = pool(hidden, attention_mask, self.pooling).float()
        return nn.functional.normalize(emb, dim=-1) if self.normalize else emb

    def tokenize_ids(
        self, texts: Sequence[str], prompt: str | None = None, max_length: int | None = None
    ) -> list[list[int]]:
        """Texts -> unpadded token id lists, prefix applied, truncated (to ``max_length`` or the
        encoder's), EOS appended if configured."""
        prefix = self.prefix(prompt)
        room = (max_length or self.max_length) - int(self.append_eos)
        ids = self.tokenizer(
            [prefix + t for t in texts], truncation=True, max_length=room, add_special_tokens=True
        )["input_ids"]
        if self.append_eos:
            eos = self.tokenizer.eos_token_id
            ids = [x if x and x[-1] == eos else x + [eos] for x in ids]
        return ids

    def pad(self, ids: Sequence[list[int]]) -> dict[str, Tensor]:
        """Pad id lists on the configured side into {input_ids (B, L), attention_mask (B, L)}."""
        width = max(len(x) for x in ids)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            sl = slice(width - len(x), width) if self.tokenizer.padding_side == "left" else slice(0, len(x))
            input_ids[row, sl] = torch.tensor(x)
            mask[row, sl] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def tokenize(
        self, texts: Sequence[str], prompt: str | None = None, max_length: int | None = None
    ) -> dict[str, Tensor]:
        return self.pad(self.tokenize_ids(texts, prompt, max_length))

    def prompts_for(self, task: str | None = None) -> dict[str, str]:
        """The named prompts of ``task`` (default: the active adapter); the plain ``prompts`` when the task
        has none of its own."""
        task = task or self.task
        return self.task_prompts.get(task, self.prompts) if task else self.prompts

    def prefix(self, prompt: str | None) -> str:
        if prompt is None:
            return ""
        prompts = self.prompts_for()
        if prompt not in prompts:
            where = f" of task {self.task!r}" if self.task in self.task_prompts else ""
            raise KeyError(f"unknown prompt {prompt!r}; configured prompts{where}: {sorted(prompts)}")
        return prompts[prompt]

    # ------------------------------------------------------------------ task adapters
    @property
    def adapters(self) -> list[str]:
        """Names of the task adapters on the backbone (empty for a plain model)."""
        return list(self.backbone.peft_config) if _is_peft(self.backbone) else []

    def _require_adapter(self, task: str, where: str = "") -> None:
        if task not in self.adapters:
            raise KeyError(f"{where}no adapter {task!r}; adapters: {self.adapters}")

    def _require_new_adapter(self, task: str) -> None:
        if task in self.adapters:
            raise ValueError(f"adapter {task!r} exists already (adapters: {self.adapters})")

    def add_adapter(
        self, task: str, config, prompts: dict[str, str] | None = None, trainable: bool = True
    ) -> None:
        """Add a fresh LoRA adapter ``task`` (peft ``LoraConfig``; B = 0, so the model is unchanged) and
        activate it. Every backbone weight stays frozen; only the adapter's A, B are trainable."""
        self._require_new_adapter(task)
        if _is_peft(self.backbone):
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
        if _is_peft(self.backbone):
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
        if not _is_peft(self.backbone):
            yield
            return
        with self.backbone.disable_adapter():
            yield

    def for_task(self, task: str) -> TaskEncoder:
        """A view whose ``encode`` always uses adapter ``task`` (for APIs that only pass ``prompt``)."""
        self._require_adapter(task)
        return TaskEncoder(self, task)

    def merged(self, task: str) -> StudentEncoder:
        """A plain StudentEncoder (no peft) with adapter ``task`` merged into the weights,
        W' = W + (alpha / r) B A, and the task's prompts as its prompts. This encoder is unchanged."""
        self._require_adapter(task)
        peft_copy = copy.deepcopy(self.backbone)
        peft_copy.set_adapter(task)
        model = peft_copy.merge_and_unload(adapter_names=[task])
        model.eval()
        enc = StudentEncoder(
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
        return enc

    def base_model(self) -> PreTrainedModel:
        """The backbone without adapters (a copy when adapters exist; the backbone itself otherwise)."""
        return copy.deepcopy(self.backbone).unload() if _is_peft(self.backbone) else self.backbone

    # ------------------------------------------------------------------ inference API
    @torch.inference_mode()
    def encode(
        self,
        texts: str | Sequence[str],
        prompt: str | None = None,
        batch_size: int = 64,
        dim: int | None = None,
        precision: str = "float32",
        progress: bool = False,
        task: str | None = None,
    ) -> np.ndarray:
        """Embed texts -> numpy (N, dim) (quantized per ``precision``; one text gives (dim,)).

        ``task`` selects the adapter (and its prompts) for this call, e.g.
        ``encode(texts, task="retrieval", prompt="query")``; None keeps the active one.

        Texts are tokenised once and sorted by token length, so each batch pads to its own longest
        text; rows come back in input order. ``dim`` keeps the first ``dim`` components and
        re-normalises (Matryoshka truncation); ``precision`` is ``float32 | int8 | binary | ubinary``
        (see ``jina5.quantize``).
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"encode: text {i} is {'empty' if isinstance(t, str) else type(t).__name__}")
        if dim is not None and not 0 < dim <= self.dim:
            raise ValueError(f"dim={dim} must be in (0, {self.dim}]")
        if task is not None:
            self._require_adapter(task, where="encode: ")
        was_training = self.training
        self.eval()
        with self.using_task(task):
            ids = self.tokenize_ids(texts, prompt)
            order = np.argsort([-len(x) for x in ids], kind="stable")
            device = next(self.parameters()).device
            out = np.empty((len(texts), self.dim), dtype=np.float32)
            bar = tqdm(total=len(texts), unit="text", disable=not progress, desc="encode")
            for start in range(0, len(texts), batch_size):
                rows = order[start : start + batch_size]
                batch = {k: v.to(device) for k, v in self.pad([ids[i] for i in rows]).items()}
                out[rows] = self(**batch).cpu().numpy()
                bar.update(len(rows))
            bar.close()
        self.train(was_training)
        if dim is not None and dim < self.dim:
            out = out[:, :dim]
            if self.normalize:
                out /= np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)
        out = quantize(out, precision)
        return out[0] if single else out

    # ------------------------------------------------------------------ persistence
    def encoder_config(self) -> dict:
        """The encoding settings (``jina5_encoder.json``); adapter keys only when there are adapters,
        so a plain model's settings (and the teacher-cache / eval fingerprints made of them) never move."""
        cfg = {
            "pooling": self.pooling,
            "prompts": self.prompts,
            "max_length": self.max_length,
            "append_eos": self.append_eos,
            "padding_side": self.tokenizer.padding_side,
            "normalize": self.normalize,
            "source": str(self.source),
        }
        if self.adapters or self.task_prompts:
            cfg.update(task_prompts=self.task_prompts, adapters=self.adapters, task=self.task)
        return cfg

    def save_pretrained(self, path: str | Path) -> Path:
        """Write backbone + tokenizer + ``jina5_encoder.json``; ``StudentEncoder.from_pretrained`` loads it.

        Without adapters the sentence-transformers module files (pooling, normalisation, prompts) are
        written too, so ``sentence_transformers.SentenceTransformer(path)`` loads it. With adapters the
        directory holds the base weights and ``adapters/<task>/`` (peft format) and no
        sentence-transformers files (they would load the base model without any adapter): use
        ``python -m jina5.export`` for a per-task sentence-transformers directory.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.base_model().save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        (path / JINA5_CONFIG).write_text(json.dumps(self.encoder_config(), indent=2))
        if self.adapters:
            self.backbone.save_pretrained(str(path / ADAPTERS_DIR))
            (path / "modules.json").unlink(missing_ok=True)
        else:
            _write_sentence_transformers_files(path, self)
        return path

    @classmethod
    def from_pretrained(
        cls, path: str | Path, trainable_adapters: bool = False, **overrides
    ) -> StudentEncoder:
        """Load a directory written by ``save_pretrained`` (its settings, overridable by kwargs), with
        every adapter it holds; the adapter that was active when saved is active again."""
        cfg_file = Path(path) / JINA5_CONFIG
        cfg = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
        cfg.pop("source", None)
        adapters, task = cfg.pop("adapters", []), cfg.pop("task", None)
        cfg.update(overrides)
        enc = cls(str(path), **cfg)
        for name in adapters:
            adapter_dir = Path(path) / ADAPTERS_DIR / name
            if not (adapter_dir / "adapter_config.json").exists():
                raise FileNotFoundError(
                    f"{cfg_file} lists adapter {name!r} but {adapter_dir} holds no adapter_config.json"
                )
            enc.load_adapter(adapter_dir, name, trainable=trainable_adapters)
        if task is not None:
            enc.set_task(task)
        return enc


class TaskEncoder:
    """A StudentEncoder bound to one adapter: ``encode(texts, prompt=...)`` always uses ``task``.

    Has the attributes evaluation code reads from an encoder (``prompts``, ``dim``, ``backbone``,
    ``encoder_config()`` with the task in it, so fingerprints differ per task).
    """

    def __init__(self, encoder: StudentEncoder, task: str) -> None:
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

    def parameters(self):
        return self.encoder.parameters()

    def encode(self, texts: str | Sequence[str], prompt: str | None = None, **kwargs) -> np.ndarray:
        return self.encoder.encode(texts, prompt=prompt, task=self.task, **kwargs)


def _is_peft(model: nn.Module) -> bool:
    """Whether ``model`` is a peft ``PeftModel`` (peft cannot have made one if it was never imported)."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


def _write_sentence_transformers_files(path: Path, enc: StudentEncoder) -> None:
    mode = {"mean": "mean", "cls": "cls", "last_token": "lasttoken"}[enc.pooling]
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if enc.normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (path / "2_Normalize").mkdir(exist_ok=True)
    (path / "modules.json").write_text(json.dumps(modules, indent=2))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {"word_embedding_dimension": enc.dim, "pooling_mode": mode, "include_prompt": True}, indent=2
        )
    )
    (path / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": enc.max_length, "do_lower_case": False}, indent=2)
    )
    (path / "config_sentence_transformers.json").write_text(
        json.dumps(
            {"prompts": enc.prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2
        )
    )
