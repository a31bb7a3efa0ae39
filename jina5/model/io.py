"""An encoder on disk: the directory ``Encoder.save_pretrained`` writes, and its content fingerprint.

Directory layout::

    config.json, model.safetensors     the backbone (base weights, adapters un-merged; no [CLS] pooler)
    tokenizer*.json                    its tokenizer (right padding; for an ``append_eos`` encoder its
                                       template appends the EOS: ``jina5.model.st_format``)
    jina5_encoder.json                 the encoding settings (``Encoder.encoder_config()``), plus
                                       ``"tokenizer_appends_eos": true`` when the tokenizer appends the EOS
    jina5_card.json                    what the training run knows, for the model card (when given)
    adapters/<task>/                   one peft adapter per task (adapter_config.json + weights), if any
    modules.json, 1_Pooling/, 2_Normalize/, sentence_bert_config.json, config_sentence_transformers.json,
    README.md                          sentence-transformers modules and model card (plain encoders only;
                                       written by sentence-transformers' own save: ``jina5.model.st_format``)

A directory with adapters has no sentence-transformers files: they would load the base model without
any adapter. ``python -m jina5.export`` merges one adapter into the weights for that.

A save is atomic (``jina5.atomic.atomic_dir``): the folder is written beside ``path`` and renamed into
place, so ``path`` is the old folder or the whole new one, never a part that would load as another model;
a save killed mid-write leaves only its staging folder, which the next save of ``path`` removes. It
replaces a folder holding only what a save writes (:data:`SAVED_NAMES`: an earlier save, or one that a
kill of older code left half-written, ``.tmpXXXXXX`` files included) and refuses one holding anything
else, naming it (:func:`foreign_entries`).

``content_fingerprint`` names a model by what it computes (config, settings, weight bytes, and the
compute precision when it is not fp32), not by where it came from: it keys the teacher cache and the
evaluation cache.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import AutoConfig, AutoModel

from jina5.atomic import atomic_dir
from jina5.model.card import CARD_FILE, CardInfo
from jina5.model.precision import FP32
from jina5.model.rope import check_rope, rope_theta, set_rope_theta
from jina5.model.st_format import export_tokenizer, write_sentence_transformers_files

if TYPE_CHECKING:
    from jina5.model.encoder import Encoder

JINA5_CONFIG = "jina5_encoder.json"
ADAPTERS_DIR = "adapters"  # <encoder dir>/adapters/<task>/{adapter_config.json, adapter_model.safetensors}
VOLATILE_CONFIG = ("_name_or_path", "transformers_version", "_attn_implementation_autoset")
TOKENIZER_APPENDS_EOS = "tokenizer_appends_eos"  # jina5_encoder.json key (not an encoding setting)
# What a save writes for any encoder (plain or with adapters, any tokenizer): a save replaces a folder
# holding only these (an earlier save, or one a kill left half-written) and refuses one holding more.
SAVED_NAMES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        JINA5_CONFIG,
        CARD_FILE,
        ADAPTERS_DIR,
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "chat_template.jinja",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
        "spiece.model",
        "sentencepiece.bpe.model",
        "modules.json",
        "1_Pooling",
        "2_Normalize",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "README.md",
    }
)
SAVED_PATTERNS = (r"model-\d{5}-of-\d{5}\.safetensors", r"\.tmp[A-Za-z0-9]{6}")  # shards; safetensors' temp


def save_encoder(
    encoder: Encoder,
    path: str | Path,
    card: CardInfo | None = None,
    model_id: str | None = None,
    rope_theta: float | None = None,
    max_length: int | None = None,
) -> Path:
    """Write backbone + tokenizer + ``jina5_encoder.json`` (+ ``jina5_card.json`` from ``card``) at
    ``path``, plus ``adapters/<task>/`` when the encoder has adapters, else the sentence-transformers
    files and model card (``model_id``: the hub repo its usage snippet names); module docstring.

    Inference settings (None keeps the encoder's): ``rope_theta`` goes into the saved ``config.json``, so
    every load builds its rotary buffers with it (``jina5.model.rope``); ``max_length`` into
    ``jina5_encoder.json`` and sentence-transformers' ``max_seq_length``. The in-memory encoder is unchanged."""
    if rope_theta is not None or max_length is not None:
        with _saved_as(encoder, rope_theta, max_length):
            return save_encoder(encoder, path, card, model_id)
    with atomic_dir(path, foreign_entries) as staged:
        _write_encoder(encoder, staged, card, model_id)
    return Path(path)


def foreign_entries(existing: Path, written: Path) -> list[str]:
    """The entries of the folder ``existing`` that saving ``written`` over it may not delete: anything
    but what a save writes (:data:`SAVED_NAMES`, the names in ``written``) and the ``.tmpXXXXXX`` files
    that safetensors leaves when killed mid-write."""
    ours = SAVED_NAMES | {p.name for p in written.iterdir()}
    return [
        p.name
        for p in existing.iterdir()
        if p.name not in ours and not any(re.fullmatch(pattern, p.name) for pattern in SAVED_PATTERNS)
    ]


def _write_encoder(encoder: Encoder, path: Path, card: CardInfo | None, model_id: str | None) -> None:
    """The files of :func:`save_encoder`, written into the empty folder ``path``."""
    encoder.base_model().save_pretrained(path)
    tokenizer, tokenizer_appends_eos = export_tokenizer(encoder)
    tokenizer.save_pretrained(path)
    settings = encoder.encoder_config()
    if tokenizer_appends_eos:
        settings[TOKENIZER_APPENDS_EOS] = True
    (path / JINA5_CONFIG).write_text(json.dumps(settings, indent=2))
    if card is not None:
        card.save(path / CARD_FILE)
    if encoder.adapters:
        encoder.backbone.save_pretrained(str(path / ADAPTERS_DIR))
    else:
        write_sentence_transformers_files(encoder, path, tokenizer_appends_eos, card, model_id)


@contextmanager
def _saved_as(encoder: Encoder, theta: float | None, max_length: int | None) -> Iterator[None]:
    """``encoder`` with the inference RoPE ``theta`` in its backbone config and ``max_length`` while it is
    written (the rotary buffers stay as built: only what is saved changes); restored afterwards."""
    config = encoder.backbone.config
    if theta is not None:
        check_rope(config, "export.rope_theta")
    kept_theta, kept_length = rope_theta(config), encoder.max_length
    try:
        if theta is not None:
            set_rope_theta(config, theta, "export.rope_theta")
        if max_length is not None:
            encoder.max_length = int(max_length)
        yield
    finally:
        if theta is not None:
            set_rope_theta(config, kept_theta)
        encoder.max_length = kept_length


def load_encoder(
    cls: type[Encoder], path: str | Path, trainable_adapters: bool = False, **overrides
) -> Encoder:
    """A ``cls`` built from a directory written by ``save_encoder``: its saved settings (``overrides``
    win; an override ``source``, a ready backbone with ``tokenizer``, computes instead of the saved
    weights), every adapter it holds, and the adapter that was active when saved active again; a saved
    tokenizer that appends the EOS itself sets ``Encoder.tokenizer_appends_eos``."""
    cfg_file = Path(path) / JINA5_CONFIG
    cfg = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
    cfg.pop("source", None)
    adapters, task = cfg.pop("adapters", []), cfg.pop("task", None)
    tokenizer_appends_eos = bool(cfg.pop(TOKENIZER_APPENDS_EOS, False))
    cfg.update(overrides)
    enc = cls(cfg.pop("source", str(path)), **cfg)
    enc.tokenizer_appends_eos = tokenizer_appends_eos
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


def backbone_load_kwargs(path: str | Path) -> dict:
    """Extra ``AutoModel.from_pretrained`` kwargs for the backbone at ``path``: ``no_pooler_kwargs``
    for a directory we saved (it has ``jina5_encoder.json``), none for anything else."""
    return no_pooler_kwargs(path) if (Path(path) / JINA5_CONFIG).exists() else {}


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


def content_fingerprint(
    encoder: Encoder,
    skip_settings: Sequence[str] = ("source",),
    skip_config: Sequence[str] = VOLATILE_CONFIG,
) -> str:
    """sha256 over the backbone config (less ``skip_config``), the encoder settings (less
    ``skip_settings``) and every weight's bytes of ``encoder`` (an ``Encoder`` or a ``TaskEncoder``
    view): the same model loaded from anywhere hashes the same.

        sha256( json([config, settings], sorted keys) || name_1 || bytes(w_1) || name_2 || ... )

    over ``backbone.state_dict()`` in its order (adapter weights included when there are adapters).
    A bf16 encoder (``compute_precision``, ``jina5.model.precision``) adds ``"compute_precision": "bf16"`` to
    the settings; an fp32 one adds nothing, so it hashes as an encoder with no precision setting.
    """
    h = hashlib.sha256()
    config = encoder.backbone.config  # None: a sentence-transformers model with no transformer (st_saved)
    cfg = config.to_dict() if config is not None else {}
    for key in skip_config:
        cfg.pop(key, None)
    settings = {k: v for k, v in encoder.encoder_config().items() if k not in skip_settings}
    if encoder.compute_precision != FP32:
        settings["compute_precision"] = encoder.compute_precision
    h.update(json.dumps([cfg, settings], sort_keys=True, default=str).encode())
    for name, tensor in encoder.backbone.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
