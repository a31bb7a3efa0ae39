"""Run a ``Encoder`` under MTEB (the ``mteb`` package is imported lazily, only when needed).

    import mteb
    from jina5.eval.mteb_adapter import MTEBEncoder
    model = MTEBEncoder(Encoder.from_pretrained("outputs/runs/combined-seed0/encoder"), name="combined-seed0")
    mteb.evaluate(model, mteb.get_tasks(tasks=["STS12", "SciFact"]))          # mteb >= 2
    mteb.MTEB(tasks=mteb.get_tasks(tasks=["STS12"])).run(model)               # mteb 1.x

``python -m jina5.mteb`` (:mod:`jina5.mteb`) does this for a run, an encoder directory or a baseline
and writes the main scores into our results store as well.

Model identity (mteb >= 2): ``mteb_model_meta`` is a real ``mteb.ModelMeta``, which mteb files results
under (``<cache>/results/<name>/<revision>/[<experiment>/]<task>.json``) and looks cached results up
by: ``name`` = ``jina5/<label>`` (:func:`mteb_model_name`), ``revision`` = the model's content
fingerprint (:func:`jina5.eval.encoding.model_fingerprint`: weights, encoding settings, prompts,
compute precision), ``embed_dim`` / ``max_tokens`` / ``similarity_fn_name="cosine"`` / parameter
count, and ``experiment_kwargs`` naming a Matryoshka truncation (``embed_dim``), binary vectors
(``output_dtypes``, as mteb's own compression wrapper) and non-default prompt routing. Two
different models therefore never share a cache entry, and one model's truncations do not either.
(Without it mteb files every model as ``no_model_name/available`` and its default cache hands one
model's scores to the next.)

Empty texts: MTEB corpora hold a few empty documents; they are encoded as sentence-transformers
encodes them (prefix and special tokens only: ``Encoder.encode(..., allow_empty=True)``) instead of
aborting the run. The ``Encoder``'s default still rejects empty texts in our own pipelines.

Prompt routing (jina-embeddings-v5 convention): in an asymmetric retrieval-like task
(``RETRIEVAL_TASK_TYPES``: Retrieval, Reranking and their instruction variants, which rank
documents for a query as retrieval does) the query side gets the encoder's ``query`` prompt
("Query: ") and the corpus side its ``document`` prompt ("Document: "); every other task type (STS,
classification, clustering, pair classification, bitext mining, summarization, ...) gets
``document`` on every text. A prompt the encoder does not define encodes without a prefix.

Both encoder protocols are served by one ``encode``:

- mteb 1.x: ``encode(sentences: list[str], *, task_name: str, prompt_type=None, **kwargs)``; the task
  type is looked up with ``mteb.get_task(task_name).metadata.type`` (the only mteb import);
- mteb 2.x: ``encode(inputs: DataLoader[{"text": [...]}], *, task_metadata, hf_split, hf_subset,
  prompt_type=None, **kwargs)``.

``prompt_type`` is mteb's ``PromptType`` enum (values ``query`` and ``passage`` in 1.x, ``query`` and
``document`` in 2.x) or None; only its value is read. Embeddings are unit-norm float32 (N, dim);
``dim`` truncates (Matryoshka) and ``binary=True`` returns the +-1 sign vectors, whose cosine is
1 - 2 * hamming / dim, so MTEB's cosine scoring ranks exactly as Hamming distance does.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from jina5.eval.metrics import sign_vectors, truncate

RETRIEVAL_TASK_TYPES: frozenset[str] = frozenset(
    {"Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking"}
)


def prompt_type_value(prompt_type: Any) -> str | None:
    """``PromptType.query`` / ``"query"`` -> ``"query"``; ``passage`` / ``document`` -> ``"document"``; None -> None."""
    if prompt_type is None:
        return None
    value = str(getattr(prompt_type, "value", prompt_type)).lower()
    if value == "query":
        return "query"
    if value in ("passage", "document", "corpus"):
        return "document"
    raise ValueError(f"unknown mteb prompt_type {prompt_type!r} (expected query, passage or document)")


def route_prompt(
    task_type: str | None, prompt_type: Any, retrieval_types: Iterable[str] = RETRIEVAL_TASK_TYPES
) -> str:
    """The encoder prompt name for one encode call: ``query`` only for the query side of a
    retrieval-like task, ``document`` for everything else (module docstring)."""
    side = prompt_type_value(prompt_type)
    if task_type in set(retrieval_types) and side == "query":
        return "query"
    return "document"


def task_type_of(task_metadata: Any = None, task_name: str | None = None) -> str | None:
    """The MTEB task type (``metadata.type``, e.g. "Retrieval"), from task metadata (mteb 2) or by
    looking ``task_name`` up in mteb (1.x; imports mteb). None when neither is given."""
    if task_metadata is not None:
        if isinstance(task_metadata, Mapping):
            return task_metadata.get("type")
        return getattr(task_metadata, "type", None)
    if task_name is None:
        return None
    import mteb  # lazy: an optional extra

    return mteb.get_task(task_name).metadata.type


def texts_of(inputs: Any) -> list[str]:
    """A list of texts from a list/tuple of str (mteb 1.x) or an iterable of batches ``{"text": [...]}``
    (mteb 2.x DataLoader[BatchedInput])."""
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, Sequence) and (not inputs or isinstance(inputs[0], str)):
        return list(inputs)
    texts: list[str] = []
    for batch in inputs:
        if isinstance(batch, str):
            texts.append(batch)
        elif isinstance(batch, Mapping) and "text" in batch:
            texts.extend(batch["text"])
        else:
            raise TypeError(f"cannot read texts from an mteb input batch of type {type(batch).__name__}")
    return texts


def mteb_model_name(label: str) -> str:
    """The mteb model name of a jina5 model: ``jina5/<label>`` with the label reduced to
    ``[A-Za-z0-9_.-]`` (mteb requires ``organization/model``; it becomes a cache directory name)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(label)).strip("_")
    if not safe:
        raise ValueError(f"cannot make an mteb model name of label {label!r}")
    return f"jina5/{safe}"


def default_label(encoder: Any) -> str:
    """A label for an encoder given none: its ``source`` (bundled name, hub id, directory, ``tiny:bert``)."""
    return str(getattr(encoder, "source", None) or type(encoder).__name__)


def build_model_meta(
    encoder: Any,
    name: str,
    revision: str,
    dim: int | None = None,
    binary: bool = False,
    retrieval_types: Iterable[str] = RETRIEVAL_TASK_TYPES,
) -> Any:
    """An ``mteb.ModelMeta`` (mteb >= 2) for ``encoder`` encoded at ``dim`` / ``binary`` (module docstring).

    Fields we cannot know (release date, license, languages, training data sets) are None: unknown,
    which mteb reads as "not declared" (e.g. no zero-shot claim), never as "none".
    """
    from mteb.models import ModelMeta  # lazy: only with mteb installed
    from mteb.types import OutputDType

    full = int(getattr(encoder, "dim", 0) or 0) or None
    embed_dim = int(dim) if dim else full
    params = list(encoder.parameters()) if hasattr(encoder, "parameters") else []
    prompts = getattr(encoder, "prompts", None) or {}
    experiment: dict[str, Any] = {}
    if dim and full and int(dim) < full:
        experiment["embed_dim"] = int(dim)
    if binary:
        experiment["output_dtypes"] = OutputDType.BINARY.value
    if frozenset(retrieval_types) != RETRIEVAL_TASK_TYPES:
        experiment["query_prompt_task_types"] = sorted(retrieval_types)
    return ModelMeta(
        loader=None,  # an in-memory model: mteb never loads it by name
        name=name,
        revision=revision,
        release_date=None,
        languages=None,
        n_parameters=sum(p.numel() for p in params) if params else None,
        memory_usage_mb=round(sum(p.numel() * p.element_size() for p in params) / 2**20, 2)
        if params
        else None,
        max_tokens=getattr(encoder, "max_length", None),
        embed_dim=embed_dim,
        license=None,
        open_weights=None,
        public_training_code=None,
        public_training_data=None,
        framework=["PyTorch", "Transformers"],
        similarity_fn_name="cosine",
        use_instructions=any(bool(v) for v in prompts.values()),
        training_datasets=None,
        modalities=["text"],
        model_type=["dense"],
        output_dtypes=[OutputDType.BINARY] if binary else None,
        experiment_kwargs=experiment or None,
    )


def takes_allow_empty(encoder: Any) -> bool:
    """Whether ``encoder.encode`` accepts ``allow_empty`` (``Encoder.encode`` does)."""
    try:
        return "allow_empty" in inspect.signature(encoder.encode).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class MTEBEncoder:
    """MTEB encoder protocol over ``Encoder.encode`` (see the module docstring).

    Args:
        encoder: a ``Encoder`` (or anything with ``encode(texts, prompt=, batch_size=)`` and
            ``prompts``).
        dim: Matryoshka truncation (None: full dim).
        binary: return +-1 sign vectors (binary quantization) instead of floats.
        batch_size: default texts per batch (mteb's ``batch_size`` kwarg overrides).
        retrieval_types: the task types that use query/document prompts.
        name: the label mteb files results under, as ``jina5/<name>`` (None: the encoder's ``source``).
        revision: mteb's model revision (None: the content fingerprint,
            :func:`jina5.eval.encoding.model_fingerprint`; an encoder without weights needs one).
        model_meta: an ``mteb.ModelMeta`` to use as is (None: :func:`build_model_meta`, on first use).
    """

    encoder: Any
    dim: int | None = None
    binary: bool = False
    batch_size: int = 64
    retrieval_types: Iterable[str] = RETRIEVAL_TASK_TYPES
    name: str | None = None
    revision: str | None = None
    model_meta: Any = None

    def __post_init__(self) -> None:
        self.retrieval_types = frozenset(self.retrieval_types)

    @property
    def mteb_model_meta(self) -> Any:
        """The ``mteb.ModelMeta`` of this model (built once; imports mteb)."""
        if self.model_meta is None:
            self.model_meta = build_model_meta(
                self.encoder,
                mteb_model_name(self.name or default_label(self.encoder)),
                self.revision or self.fingerprint(),
                self.dim,
                self.binary,
                self.retrieval_types,
            )
        return self.model_meta

    @mteb_model_meta.setter
    def mteb_model_meta(self, meta: Any) -> None:  # mteb's wrappers re-assign it
        self.model_meta = meta

    def fingerprint(self) -> str:
        """The encoder's content fingerprint (the default ``revision``)."""
        if not (hasattr(self.encoder, "backbone") and hasattr(self.encoder, "encoder_config")):
            raise ValueError(
                f"cannot fingerprint a {type(self.encoder).__name__} (no backbone): pass "
                "MTEBEncoder(revision=...) so that mteb does not mix its results with another model's"
            )
        from jina5.eval.encoding import model_fingerprint  # imports torch-heavy modules only when needed

        return model_fingerprint(self.encoder)

    def prompt_name(self, task_type: str | None, prompt_type: Any) -> str | None:
        """The encoder prompt for this call, or None when the encoder does not define it."""
        name = route_prompt(task_type, prompt_type, self.retrieval_types)
        prompts = getattr(self.encoder, "prompts", None)
        return name if prompts is None or name in prompts else None

    def encode(
        self,
        inputs: Any,
        *,
        task_name: str | None = None,
        task_metadata: Any = None,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """(N, dim) float32 embeddings of ``inputs`` with the routed prompt (mteb 1.x and 2.x)."""
        texts = texts_of(inputs)
        prompt = self.prompt_name(task_type_of(task_metadata, task_name), prompt_type)
        if not texts:
            return np.zeros((0, self.dim or getattr(self.encoder, "dim", 0)), dtype=np.float32)
        extra = {"allow_empty": True} if takes_allow_empty(self.encoder) else {}
        emb = np.asarray(
            self.encoder.encode(
                texts, prompt=prompt, batch_size=int(kwargs.get("batch_size") or self.batch_size), **extra
            ),
            dtype=np.float32,
        )
        emb = truncate(emb, self.dim)
        return sign_vectors(emb) if self.binary else emb

    @staticmethod
    def similarity(embeddings1: Any, embeddings2: Any) -> torch.Tensor:
        """(N1, N2) cosine similarities (a 1-d input is one row), as a tensor like mteb's own
        ``cos_sim`` (its summarization evaluator calls ``float()`` on a (1, 1) result)."""
        a, b = _unit(embeddings1), _unit(embeddings2)
        return torch.from_numpy(a @ b.T)

    @staticmethod
    def similarity_pairwise(embeddings1: Any, embeddings2: Any) -> torch.Tensor:
        """(N,) cosine similarity of row i of each."""
        a, b = _unit(embeddings1), _unit(embeddings2)
        return torch.from_numpy(np.einsum("nd,nd->n", a, b))


def _unit(x: Any) -> np.ndarray:
    x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
    x = x[None] if x.ndim == 1 else x
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)
