"""A sentence-transformers model that jina5 did not write, encoded the way sentence-transformers does.

A directory with ``modules.json`` (or a hub repo with one) describes its pipeline, e.g.::

    Transformer -> Pooling (mean | cls | lasttoken | max | weightedmean ...) -> Dense (384 -> 128, tanh)
        -> Normalize

plus its named prompts and default prompt (``config_sentence_transformers.json``). Scoring the bare
backbone with our own pooling would score another model under its name, so
:class:`SavedSentenceTransformer` wraps ``SentenceTransformer(dir)`` itself (no custom code: no
``trust_remote_code``) behind the interface the evaluation uses (``encode(texts, prompt=)``, ``dim``,
``prompts``, ``max_length``, ``encoder_config()``, ``compute_precision``, ``backbone`` for the content
fingerprint). jina5's own exports (``jina5_encoder.json`` beside ``modules.json``) are not read here:
``Encoder.from_pretrained`` reads them, and they round-trip (``jina5.model.st_format``).

The suite's prompt names map to sentence-transformers' own calls:

    encode(texts, prompt="query")     ->  model.encode_query(texts)     (its "query" prompt; Router: query)
    encode(texts, prompt="document")  ->  model.encode_document(texts)  (document | passage | corpus)
    encode(texts, prompt=None)        ->  model.encode(texts)           (its default prompt, if any)
    encode(texts, prompt=name)        ->  model.encode(texts, prompt_name=name)

A model that cannot be read as saved is refused (``ForeignModelError``, with the reason): a
``model_type`` other than ``SentenceTransformer`` (a sparse, cross- or multi-vector encoder), modules
sentence-transformers cannot build without remote code, or modules whose output is not one vector per
text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from jina5.model.precision import FP32, autocast

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

ST_MODULES = "modules.json"  # what makes a directory a sentence-transformers model
ST_MODEL_CONFIG = "config_sentence_transformers.json"
DENSE_TYPE = "SentenceTransformer"  # the model_type of a dense embedding model
PROBE = "dimension probe"


class ForeignModelError(ValueError):
    """A sentence-transformers model that cannot be encoded as it was saved (the message says why)."""


def st_file(source: str, name: str) -> Path | None:
    """The file ``name`` of the model at ``source`` (a local directory, else a hub repo id, asked through
    ``huggingface_hub``: its cache first), or None when the model has none (a hub lookup that finds
    nothing offline included)."""
    path = Path(source)
    if path.is_dir():
        return path / name if (path / name).is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:  # LocalEntryNotFoundError (offline, not cached) is an EntryNotFoundError too
        return Path(hf_hub_download(source, name))
    except EntryNotFoundError:
        return None


def module_type(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


class SavedSentenceTransformer(nn.Module):
    """``SentenceTransformer(source)`` as the evaluation's encoder (module docstring).

    ``dim`` is the width of the vectors the pipeline really outputs (a probe encoding, checked against
    what the modules declare); ``backbone`` is the whole ``SentenceTransformer`` (its ``state_dict``
    holds every module's weights, Dense included; its ``config`` is the transformer's), so the content
    fingerprint (``jina5.model.io.content_fingerprint``) covers every module."""

    def __init__(self, model: SentenceTransformer, source: str) -> None:
        super().__init__()
        self.backbone = model
        self.source = source
        self.compute_precision = FP32
        try:
            probe = self.encode([PROBE])
        except Exception as err:  # e.g. no module makes a sentence embedding (KeyError)
            raise ForeignModelError(self._not_one_vector(f"{type(err).__name__}: {err}")) from err
        if probe.ndim != 2 or probe.shape[0] != 1 or not probe.shape[1]:
            raise ForeignModelError(self._not_one_vector(f"shape {probe.shape} for one text"))
        self.dim = int(probe.shape[1])
        declared = model.get_embedding_dimension()
        if declared is not None and declared != self.dim:
            raise ForeignModelError(
                f"{source}: its modules declare {declared}-d vectors but output {self.dim}-d ones"
            )

    @property
    def device(self) -> torch.device:
        """Where the pipeline's weights are (``SentenceTransformer.device``)."""
        return self.backbone.device

    @classmethod
    def load(cls, source: str, device: str | torch.device = "cpu") -> SavedSentenceTransformer:
        """Read ``source`` (a directory or hub id with ``modules.json``) as sentence-transformers does,
        or raise ``ForeignModelError`` with the reason it cannot be."""
        from sentence_transformers import SentenceTransformer

        config_file = st_file(source, ST_MODEL_CONFIG)
        model_type = json.loads(config_file.read_text()).get("model_type") if config_file else None
        if model_type not in (None, DENSE_TYPE):
            raise ForeignModelError(
                f"{source}: a sentence-transformers {model_type} ({config_file}), not a dense "
                f"{DENSE_TYPE}; jina5 evaluates dense text embeddings only (refused rather than scoring "
                "its backbone with another pooling)"
            )
        try:
            model = SentenceTransformer(source, device=str(device), trust_remote_code=False)
        except Exception as err:  # any reason it cannot be built as saved: name it, never fall back
            raise ForeignModelError(
                f"{source}: sentence-transformers cannot load it as saved ({type(err).__name__}: {err}); "
                "refused rather than scoring its backbone alone (jina5 runs no custom module code, so "
                "trust_remote_code is not an option here)"
            ) from err
        loaded = cls(model, source)
        log.info(
            "%s: read as sentence-transformers saved it: %s, %d-d", source, loaded.pipeline(), loaded.dim
        )
        return loaded

    def _not_one_vector(self, why: str) -> str:
        return (
            f"{self.source}: its modules ({self.pipeline()}) do not encode a text into one vector ({why}); "
            "jina5 evaluates one vector per text"
        )

    def pipeline(self) -> str:
        """``Transformer(bert) -> Pooling(cls) -> Dense(384->128, Tanh) -> Normalize``."""
        parts = []
        for module in self.backbone:
            config = module.get_config_dict() if hasattr(module, "get_config_dict") else {}
            name = type(module).__name__
            if "pooling_mode" in config:
                name += f"({config['pooling_mode']})"
            elif "out_features" in config:
                activation = str(config.get("activation_function", "")).rpartition(".")[2]
                name += f"({config['in_features']}->{config['out_features']}, {activation})"
            elif getattr(module, "config", None) is not None and hasattr(module.config, "model_type"):
                name += f"({module.config.model_type})"
            parts.append(name)
        return " -> ".join(parts)

    @property
    def prompts(self) -> dict[str, str]:
        return self.backbone.prompts

    @prompts.setter
    def prompts(self, prompts: dict[str, str]) -> None:
        """Replace the named prompts (``prompts=`` of the evaluation); a default prompt they no longer
        name is dropped."""
        self.backbone.prompts = dict(prompts)
        default = self.backbone.default_prompt_name
        if default is not None and default not in prompts:
            log.warning("the default prompt %r is not among the new prompts: no default prompt", default)
            self.backbone.default_prompt_name = None

    @property
    def max_length(self) -> int:
        return self.backbone.max_seq_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        self.backbone.max_seq_length = value

    def encoder_config(self) -> dict:
        """The encoding settings: every module's type and config, the prompts, the default prompt, the
        truncation length and ``source`` (left out of the fingerprint, as ``Encoder``'s)."""
        return {
            "sentence_transformers": [
                {"type": module_type(m), **(m.get_config_dict() if hasattr(m, "get_config_dict") else {})}
                for m in self.backbone
            ],
            "prompts": dict(self.prompts),
            "default_prompt_name": self.backbone.default_prompt_name,
            "max_length": self.max_length,
            "dim": self.dim,
            "source": self.source,
        }

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        prompt: str | None = None,
        batch_size: int = 64,
        progress: bool = False,
        allow_empty: bool = False,
    ) -> np.ndarray:
        """(N, dim) float32 vectors of ``texts`` as sentence-transformers computes them, the prompt
        routed as the module docstring says, under ``compute_precision``. An empty text raises unless
        ``allow_empty`` (as ``Encoder.encode``)."""
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"encode: text {i} is {type(text).__name__}, not str")
            if not (allow_empty or text.strip()):
                raise ValueError(f"encode: text {i} is empty (allow_empty=True encodes it as special tokens)")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.backbone
        call, kwargs = model.encode, {}
        if prompt == "query":
            call = model.encode_query
        elif prompt == "document":
            call = model.encode_document
        elif prompt is not None:
            kwargs["prompt_name"] = prompt
        with autocast(self.compute_precision, model.device.type):
            out = call(
                texts, batch_size=batch_size, show_progress_bar=progress, convert_to_tensor=True, **kwargs
            )
        return out.float().cpu().numpy()
