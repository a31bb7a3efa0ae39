"""An encoder on disk: the directory ``Encoder.save_pretrained`` writes, and its content fingerprint.

Directory layout::

    config.json, model.safetensors     the backbone (base weights, adapters un-merged; no [CLS] pooler)
    tokenizer*.json                    its tokenizer
    jina5_encoder.json                 the encoding settings (``Encoder.encoder_config()``)
    adapters/<task>/                   one peft adapter per task (adapter_config.json + weights), if any
    modules.json, 1_Pooling/, 2_Normalize/, sentence_bert_config.json, config_sentence_transformers.json
                                       sentence-transformers modules (plain encoders only; see below)

A directory with adapters has no sentence-transformers files: they would load the base model without
any adapter. ``python -m jina5.export`` merges one adapter into the weights for that.

``content_fingerprint`` names a model by what it computes (config, settings, weight bytes, and the
compute precision when it is not fp32), not by where it came from: it keys the teacher cache and the
evaluation cache.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import AutoConfig, AutoModel

from jina5.precision import FP32

if TYPE_CHECKING:
    from jina5.encoder import Encoder

JINA5_CONFIG = "jina5_encoder.json"
ADAPTERS_DIR = "adapters"  # <encoder dir>/adapters/<task>/{adapter_config.json, adapter_model.safetensors}
VOLATILE_CONFIG = ("_name_or_path", "transformers_version", "_attn_implementation_autoset")
_ST_POOLING = {"mean": "mean", "cls": "cls", "last_token": "lasttoken"}  # ours -> sentence-transformers'


def save_encoder(encoder: Encoder, path: str | Path) -> Path:
    """Write backbone + tokenizer + ``jina5_encoder.json`` at ``path``, plus ``adapters/<task>/`` when
    the encoder has adapters, else the sentence-transformers files (module docstring)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    encoder.base_model().save_pretrained(path)
    encoder.tokenizer.save_pretrained(path)
    (path / JINA5_CONFIG).write_text(json.dumps(encoder.encoder_config(), indent=2))
    if encoder.adapters:
        encoder.backbone.save_pretrained(str(path / ADAPTERS_DIR))
        (path / "modules.json").unlink(missing_ok=True)
    else:
        write_sentence_transformers_files(encoder, path)
    return path


def load_encoder(
    cls: type[Encoder], path: str | Path, trainable_adapters: bool = False, **overrides
) -> Encoder:
    """A ``cls`` built from a directory written by ``save_encoder``: its saved settings (``overrides``
    win), every adapter it holds, and the adapter that was active when saved active again."""
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


def write_sentence_transformers_files(encoder: Encoder, path: Path) -> None:
    """The sentence-transformers modules of a plain encoder at ``path`` (the backbone is already there):
    Transformer -> Pooling (our pooling mode) -> Normalize (when ``encoder.normalize``), with
    ``max_length`` and the named prompts, so ``SentenceTransformer(path)`` gives ``encoder.encode``'s
    vectors."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if encoder.normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (path / "2_Normalize").mkdir(exist_ok=True)
    (path / "modules.json").write_text(json.dumps(modules, indent=2))
    (path / "1_Pooling").mkdir(exist_ok=True)
    pooling = {
        "word_embedding_dimension": encoder.dim,
        "pooling_mode": _ST_POOLING[encoder.pooling],
        "include_prompt": True,
    }
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    (path / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": encoder.max_length, "do_lower_case": False}, indent=2)
    )
    (path / "config_sentence_transformers.json").write_text(
        json.dumps(
            {"prompts": encoder.prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"},
            indent=2,
        )
    )


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
    A bf16 encoder (``compute_precision``, ``jina5.precision``) adds ``"compute_precision": "bf16"`` to
    the settings; an fp32 one adds nothing, so its fingerprint is the one from before the policy.
    """
    h = hashlib.sha256()
    cfg = encoder.backbone.config.to_dict()
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
