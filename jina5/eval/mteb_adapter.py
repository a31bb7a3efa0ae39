"""Run a ``Encoder`` under MTEB (optional extra ``mteb``; imported lazily, only when needed).

    import mteb
    from jina5.eval.mteb_adapter import MTEBEncoder
    model = MTEBEncoder(Encoder.from_pretrained("outputs/runs/combined-seed0/encoder"))
    mteb.evaluate(model, mteb.get_tasks(tasks=["STS12", "SciFact"]))          # mteb >= 2
    mteb.MTEB(tasks=mteb.get_tasks(tasks=["STS12"])).run(model)               # mteb 1.x

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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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
        model_meta: returned by ``mteb_model_meta`` (None lets mteb fill an empty one).
    """

    encoder: Any
    dim: int | None = None
    binary: bool = False
    batch_size: int = 64
    retrieval_types: Iterable[str] = RETRIEVAL_TASK_TYPES
    model_meta: Any = None

    def __post_init__(self) -> None:
        self.retrieval_types = frozenset(self.retrieval_types)

    @property
    def mteb_model_meta(self) -> Any:
        return self.model_meta

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
        emb = np.asarray(
            self.encoder.encode(
                texts, prompt=prompt, batch_size=int(kwargs.get("batch_size") or self.batch_size)
            ),
            dtype=np.float32,
        )
        emb = truncate(emb, self.dim)
        return sign_vectors(emb) if self.binary else emb

    @staticmethod
    def similarity(embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """(N1, N2) cosine similarities."""
        a, b = _unit(embeddings1), _unit(embeddings2)
        return a @ b.T

    @staticmethod
    def similarity_pairwise(embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """(N,) cosine similarity of row i of each."""
        a, b = _unit(embeddings1), _unit(embeddings2)
        return np.einsum("nd,nd->n", a, b)


def _unit(x: Any) -> np.ndarray:
    x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
    x = x[None] if x.ndim == 1 else x
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)
