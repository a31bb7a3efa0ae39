"""Encoder: a Hugging Face backbone + pooling + L2 normalisation, and THE inference API.

    texts --tokenise (+ prefix)--> ids (B, L) --backbone--> hidden (B, L, H) --pool--> (B, H) --L2--> (B, H)

One class for every model that embeds text here: the student, the teacher (``jina5.teacher.cache``) and the
baselines.

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

Task adapters (stage 2): the lifecycle (``add_adapter``, ``set_task``, ``adapters_disabled``,
``merged``, ``for_task``...) is ``jina5.model.adapters.TaskAdapters``; here ``encode(texts, task=, prompt=)``
switches adapter for one call and prefixes with that task's prompts (``task_prompts[task]``).
Saving and loading (``save_pretrained`` / ``from_pretrained``) is ``jina5.model.io``.

Speed paths (training settings, not encoding settings: not saved, not in the fingerprint):
``attn_implementation`` (eager | sdpa | flash_attention_2; None: auto, ``jina5.model.attention``: eager
for training on a CPU with attention dropout, else transformers' default), ``gradient_checkpointing``
(recompute each block in the backward, non-reentrant), ``compile`` (``torch.compile`` of the backbone,
``compile_mode``), ``packing`` (training forwards pack the padded batch into rows without pads:
``jina5.model.packing``; ``"auto"``: where it saves enough rows). Every forward passes ``use_cache=False``
where the backbone takes it (a decoder would otherwise build a KV cache it never reads).

Compute precision: ``encode`` runs under ``compute_precision`` (``"fp32"``, or ``"bf16"`` autocast;
``jina5.model.precision``), which its owner sets (the teacher, the evaluation); the vectors stay float32.
It is not an encoding setting (not saved), but it is part of the content fingerprint.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from jina5.model.adapters import TaskAdapters
from jina5.model.attention import auto_attention
from jina5.model.backbone import load_backbone, prune_layers
from jina5.model.io import load_encoder, save_encoder
from jina5.model.packing import (
    AUTO,
    AUTO_MIN_SAVING,
    Packed,
    block_diagonal_mask,
    check_packing_attention,
    pack,
    unpack,
)
from jina5.model.pooling import POOLINGS, pool
from jina5.model.precision import FP32, autocast
from jina5.model.quantize import quantize
from jina5.model.text_budget import bounded_texts, chars_per_token

log = logging.getLogger(__name__)

ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")


def position_offset(backbone: nn.Module) -> int:
    """The first position id of a sequence in ``backbone``: padding_idx + 1 where its learned position
    table reserves rows 0..padding_idx (an ``nn.Embedding`` with a ``padding_idx``), else 0.

    That table is the RoBERTa family's (roberta, xlm-roberta, camembert, data2vec-text, xlm-roberta-xl,
    roberta-prelayernorm, xmod, ibert, longformer, luke, esm...) and MPNet's: transformers numbers a
    sequence's tokens padding_idx + 1, padding_idx + 2, ... (``create_position_ids_from_input_ids``), and
    0-based ``position_ids`` would shift every position by padding_idx + 1. Read from the table, not from
    the model type or ``config.pad_token_id``: MPNet's table reserves 0..1 whatever its pad token is.
    """
    table = getattr(getattr(backbone, "embeddings", None), "position_embeddings", None)
    if isinstance(table, nn.Embedding) and table.padding_idx is not None:
        return table.padding_idx + 1
    return 0


class Encoder(TaskAdapters, nn.Module):
    """HF backbone + pooling + normalisation, with named prompts (prefixes) and ``encode``.

    Args:
        source: local dir, bundled model (its hub id or ``bundled:<hub id>``; a missing package raises
            ``AssetMissingError``), ``hub:<hub id>``, other hub id (see ``jina5.assets``); ``tiny:<model_type>``
            for a random-init toy backbone (bert, mpnet, xlm-roberta, qwen3, eurobert; code-path tests only); or a
            ready backbone with ``tokenizer`` (a ``PreTrainedModel``, or an exported graph:
            ``jina5.model.graph_runtime``).
        pooling: ``mean | cls | last_token``.
        prompts: named prefixes, e.g. ``{"query": "Query: ", "document": "Document: "}``.
        keep_layers: indices of the blocks to keep (None keeps all).
        max_length: tokens per text (truncation), prefix included.
        append_eos: append the EOS token after truncation (decoders with last-token pooling). The
            attribute ``tokenizer_appends_eos`` (not an argument: ``from_pretrained`` sets it for a saved
            encoder, whose tokenizer template appends the EOS; ``jina5.model.st_format``) says the tokenizer
            does it: texts are then truncated to ``max_length`` tokens, EOS included, with nothing added.
        padding_side: ``right | left``; the vectors do not depend on it.
        normalize: L2-normalise the pooled vector.
        task_prompts: per-adapter prompts, ``{task: {prompt name: prefix}}``; used instead of ``prompts``
            while that task's adapter is active (see ``jina5.model.adapters.DEFAULT_TASK_PROMPTS``).
        attn_implementation: ``eager | sdpa | flash_attention_2``; None: auto, the backbone built with
            transformers' default (the ``tiny:`` backbones: eager), whose SDPA is switched to eager while
            the encoder trains on a CPU with attention dropout (``jina5.model.attention``).
        gradient_checkpointing: recompute each block's activations in the backward (transformers'
            ``activation_checkpointing_enable``, non-reentrant; dropout RNG replayed): less memory, ~1/3
            more compute. Training mode only.
        compile: ``torch.compile`` the backbone in place (``nn.Module.compile``: parameter names and
            checkpoints unchanged), with ``compile_mode`` (None | default | reduce-overhead |
            max-autotune...).
        packing: True: in training mode, pack each padded batch into rows without pads before the
            backbone (``jina5.model.packing``; decoders by restarting ``position_ids``, encoders with a
            block-diagonal mask) and unpack for pooling; ``encode``, eval-mode forwards and batches where
            no two sequences fit one row keep the padded path. ``"auto"``: the same, for the batches where
            packing saves at least ``AUTO_MIN_SAVING`` of the rows, and only where the backbone can pack
            (positions it takes, no flash attention); False: never.
        rope_theta: the RoPE base theta the backbone is built with (its rotary ``inv_freq``; ``jina5.model.rope``),
            instead of the one in its config; None keeps that one. A backbone without RoPE raises.
    """

    def __init__(
        self,
        source: str | nn.Module,
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
        gradient_checkpointing: bool = False,
        compile: bool = False,
        compile_mode: str | None = None,
        packing: bool | str = False,
        rope_theta: float | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if packing not in (True, False, AUTO):
            raise ValueError(f"student.packing must be true, false or {AUTO!r}, got {packing!r}")
        if packing is True:  # before the attention implementation is validated or any backbone is built
            check_packing_attention(attn_implementation)
        if attn_implementation is not None and attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"student.attn_implementation must be null or one of {ATTN_IMPLEMENTATIONS}, "
                f"got {attn_implementation!r}"
            )
        self.backbone, tokenizer, self.source = load_backbone(
            source, tokenizer, attn_implementation, torch_dtype, rope_theta
        )
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
        self.compute_precision = (
            FP32  # encode's path, "fp32" | "bf16" (jina5.model.precision.resolve_precision)
        )
        self._trainable_adapters: set[str] = set()
        self.max_length = max_length
        self._chars_per_token: int | None = None  # of the tokenizer's vocabulary, on first use (char_budget)
        self.append_eos = append_eos
        self.tokenizer_appends_eos = False  # set by from_pretrained (see append_eos)
        self.normalize = normalize
        self._position_offset = position_offset(self.backbone)
        forward_args = inspect.signature(self.backbone.forward).parameters
        self._accepts_positions = "position_ids" in forward_args
        self._accepts_use_cache = "use_cache" in forward_args
        self._causal = any(getattr(m, "is_causal", False) for m in self.backbone.modules())
        if packing is True:
            self._check_packing()
        elif packing == AUTO and not self._can_pack():
            packing = False
        self.packing = packing
        self.attn_implementation = attn_implementation
        self._built_attention = self.backbone.config._attn_implementation
        if gradient_checkpointing:
            self.backbone.activation_checkpointing_enable({"use_reentrant": False})
        if compile:
            self.backbone.compile(mode=compile_mode)

    def _check_packing(self) -> None:
        config = self.backbone.config
        if not self._accepts_positions:
            raise ValueError(
                f"student.packing: {config.model_type} takes no position_ids, so packed sequences cannot "
                "restart their positions"
            )
        check_packing_attention(config._attn_implementation)

    def _can_pack(self) -> bool:
        try:
            self._check_packing()
        except ValueError:
            return False
        return True

    def train(self, mode: bool = True) -> Encoder:
        """``nn.Module.train``, and the attention implementation of the mode when it is auto
        (``attn_implementation`` None; ``jina5.model.attention.auto_attention``): set here, not per
        forward, so a recomputation in the backward (gradient checkpointing) runs the forward's."""
        super().train(mode)
        if self.attn_implementation is None:
            self.backbone.config._attn_implementation = auto_attention(
                self.backbone.config, self._built_attention, mode, self.device
            )
        return self

    # ------------------------------------------------------------------ training path
    @property
    def dim(self) -> int:
        return self.backbone.config.hidden_size

    @property
    def device(self) -> torch.device:
        """Where the encoder computes: its first parameter's device (an exported graph's backbone has
        buffers only)."""
        return next(itertools.chain(self.parameters(), self.buffers())).device

    def position_ids(self, mask: Tensor) -> Tensor:
        """Positions counted over real tokens only: (B, L) = cumsum(mask) - 1 (+ offset), pads at offset."""
        pos = (mask.cumsum(1) - 1).clamp_min(0) * mask
        return pos + self._position_offset if self._position_offset else pos

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, lengths: Sequence[int] | None = None
    ) -> Tensor:
        """(B, L) token ids and mask -> (B, H) pooled (and L2-normalised) embeddings. ``lengths``: each
        row's real tokens as host ints (the collator's, when the encoder packs): packing then plans
        its rows without reading the mask back from the device."""
        kwargs = {"use_cache": False} if self._accepts_use_cache else {}
        packed = None
        if self.packing and self.training:
            packed = pack(
                input_ids,
                attention_mask,
                self.tokenizer.pad_token_id,
                self._position_offset,
                lengths=lengths,
                left_padded=self.tokenizer.padding_side == "left",
                min_saving=AUTO_MIN_SAVING if self.packing == AUTO else 0.0,
            )
        if packed is not None:
            hidden = self.packed_hidden(packed, kwargs)
        else:
            if self._accepts_positions:
                kwargs["position_ids"] = self.position_ids(attention_mask)
            hidden = self.backbone(
                input_ids=input_ids, attention_mask=attention_mask, **kwargs
            ).last_hidden_state
        emb = pool(hidden, attention_mask, self.pooling).float()
        return nn.functional.normalize(emb, dim=-1) if self.normalize else emb

    def forward_many(self, batches: Sequence[Mapping]) -> list[Tensor]:
        """The (B_i, H) embeddings of several token batches ({input_ids, attention_mask[, lengths]} each,
        as ``forward`` takes them), in one backbone forward where that costs no more than one forward
        each: their rows concatenated, each batch widened with pads on the padding side to the widest,
        when every batch has that width already or when the forward packs (training with ``packing``:
        the pads are dropped again; ``"auto"`` keeps them only where they cost under ``AUTO_MIN_SAVING``
        of the rows). Fewer, larger matmuls. Each row's embedding depends on that row
        alone, so the result equals separate forwards to float rounding (with dropout on, the same
        masks are not drawn: they are drawn for the merged layout)."""
        width = max(b["input_ids"].shape[1] for b in batches)
        same = all(b["input_ids"].shape[1] == width for b in batches)
        if len(batches) == 1 or not (same or (self.packing and self.training)):
            return [self(**b) for b in batches]
        left = self.tokenizer.padding_side == "left"

        def widen(t: Tensor, value: int) -> Tensor:
            gap = width - t.shape[1]
            return nn.functional.pad(t, (gap, 0) if left else (0, gap), value=value)

        input_ids = torch.cat([widen(b["input_ids"], self.tokenizer.pad_token_id) for b in batches])
        mask = torch.cat([widen(b["attention_mask"], 0) for b in batches])
        lengths = None
        if all(b.get("lengths") is not None for b in batches):
            lengths = [n for b in batches for n in b["lengths"]]
        out = self(input_ids=input_ids, attention_mask=mask, lengths=lengths)
        return list(out.split([b["input_ids"].shape[0] for b in batches]))

    def packed_hidden(self, packed: Packed, kwargs: dict) -> Tensor:
        """The backbone on a packed batch (``jina5.model.packing``), unpacked to the padded (B, L, H)."""
        config = self.backbone.config
        mask = None  # decoders: transformers reads the packed sequences from the restarting positions
        if not self._causal:
            dtype = None if config._attn_implementation == "sdpa" else torch.float32
            mask = block_diagonal_mask(packed.segments, dtype)
        hidden = self.backbone(
            input_ids=packed.input_ids, attention_mask=mask, position_ids=packed.position_ids, **kwargs
        ).last_hidden_state
        return unpack(hidden, packed)

    def tokenize_ids(
        self, texts: Sequence[str], prompt: str | None = None, max_length: int | None = None
    ) -> list[list[int]]:
        """Texts -> unpadded token id lists, prefix applied, truncated (to ``max_length`` or the
        encoder's), EOS appended if configured (here, unless ``tokenizer_appends_eos``). A text is
        handed to the tokenizer cut to the character budget of that length (``char_budget``; the
        tokens kept do not change: ``jina5.model.text_budget``)."""
        prefix = self.prefix(prompt)
        append_here = self.append_eos and not self.tokenizer_appends_eos
        room = (max_length or self.max_length) - int(append_here)
        strings = bounded_texts(self.tokenizer, [prefix + t for t in texts], room, self.char_budget(room))
        ids = self.tokenizer(strings, truncation=True, max_length=room, add_special_tokens=True)["input_ids"]
        if append_here:
            eos = self.tokenizer.eos_token_id
            ids = [x if x and x[-1] == eos else x + [eos] for x in ids]
        return ids

    def char_budget(self, max_length: int | None = None) -> int:
        """The characters of a text the tokenizer is handed for ``max_length`` tokens (default: the
        encoder's): ``max_length`` x the longest vocabulary entry (``jina5.model.text_budget``)."""
        if self._chars_per_token is None:
            self._chars_per_token = chars_per_token(self.tokenizer)
        return (max_length or self.max_length) * self._chars_per_token

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

    # ------------------------------------------------------------------ inference API
    # no_grad, not inference_mode: under inference_mode autocast does not cache its bf16 copy of each
    # weight and casts every weight again for every batch; under no_grad it casts each once per call
    @torch.no_grad()
    def encode(
        self,
        texts: str | Sequence[str],
        prompt: str | None = None,
        batch_size: int = 64,
        dim: int | None = None,
        precision: str = "float32",
        progress: bool = False,
        task: str | None = None,
        allow_empty: bool = False,
    ) -> np.ndarray:
        """Embed texts -> numpy (N, dim) (quantized per ``precision``; one text gives (dim,)).

        ``task`` selects the adapter (and its prompts) for this call, e.g.
        ``encode(texts, task="retrieval", prompt="query")``; None keeps the active one.

        An empty (or whitespace-only) text raises ``ValueError`` unless ``allow_empty``: in our own
        pipelines it is a data bug. With ``allow_empty=True`` (benchmarks such as MTEB, whose corpora
        hold a few empty documents) it is encoded as sentence-transformers does: the prefix (if any)
        and the tokenizer's special tokens only (BERT: ``[CLS] [SEP]``), pooled as any other text; a
        text that leaves no token at all (a decoder without BOS / EOS and no prefix) still raises.

        Texts are tokenised once and sorted by token length, so each batch pads to its own longest
        text; rows come back in input order. ``dim`` keeps the first ``dim`` components and
        re-normalises (Matryoshka truncation); ``precision`` is ``float32 | int8 | binary | ubinary``
        (see ``jina5.model.quantize``). The forward passes run under ``self.compute_precision`` (bf16 autocast
        or plain fp32); the vectors are float32 either way.
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"encode: text {i} is {type(t).__name__}, not str")
            if not (allow_empty or t.strip()):
                raise ValueError(f"encode: text {i} is empty (allow_empty=True encodes it as special tokens)")
        if dim is not None and not 0 < dim <= self.dim:
            raise ValueError(f"dim={dim} must be in (0, {self.dim}]")
        if task is not None:
            self._require_adapter(task, where="encode: ")
        was_training = self.training
        self.eval()
        device = self.device
        with self.using_task(task), autocast(self.compute_precision, device.type):
            ids = self.tokenize_ids(texts, prompt)
            no_tokens = [i for i, x in enumerate(ids) if not x]
            if no_tokens:
                i = no_tokens[0]
                raise ValueError(
                    f"encode: text {i} ({texts[i]!r}) has no tokens (no prefix, no special tokens)"
                )
            order = np.argsort([-len(x) for x in ids], kind="stable")
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

    # ------------------------------------------------------------------ settings and persistence
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

    # Write this encoder as a directory ``from_pretrained`` loads: ``jina5.model.io.save_encoder``
    # (its signature and docstring), a method as in transformers and sentence-transformers.
    save_pretrained = save_encoder

    @classmethod
    def from_pretrained(cls, path: str | Path, trainable_adapters: bool = False, **overrides) -> Encoder:
        """Load a directory written by ``save_pretrained`` (its settings, overridable by kwargs), with
        every adapter it holds; the adapter that was active when saved is active again."""
        return load_encoder(cls, path, trainable_adapters, **overrides)


#: The old name, kept for one release (the class encodes the teacher and the baselines too).
StudentEncoder = Encoder
