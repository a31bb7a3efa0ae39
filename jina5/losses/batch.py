"""The one input every loss takes: a batch of embeddings, never the model.

Student-side tensors (``query``, ``document``, ``negatives``) are what the trained model produced and
what wrappers (Matryoshka truncation, binary-aware straight-through) transform. Everything else is a
fixed reference (teacher vectors, the frozen base model's vectors) or a per-pair annotation (scores,
text hashes) that wrappers leave alone.

Shapes (B = batch, D = student dim, K = hard negatives per query, Dt = teacher dim, Db = base dim):

==================  ===========  ==============================================================
field               shape        meaning
==================  ===========  ==============================================================
query               (B, D)       student query embeddings, L2-normalised
document            (B, D)       student positive-document embeddings, L2-normalised
negatives           (B, K, D)    student embeddings of row i's mined hard negatives
negatives_mask      (B, K) bool  True = a real negative, False = padding (None: all real)
teacher_query       (B, Dt)      teacher vectors of the queries (TeacherCache)
teacher_document    (B, Dt)      teacher vectors of the positive documents
teacher_negatives   (B, K, Dt)   teacher vectors of the hard negatives (optional; relational)
scores              (B,)         graded similarity of (query_i, document_i) (CoSENT)
base_query          (B, Db)      frozen base model (adapter off) on the queries (relational)
base_document       (B, Db)      frozen base model on the documents
base_negatives      (B, K, Db)   frozen base model on the hard negatives (relational, optional)
query_ids           (B,) int64   hash of each normalised query text (duplicate masking)
document_ids        (B,) int64   hash of each normalised positive-document text
==================  ===========  ==============================================================

``negatives_mask`` exists where ranks with different K were padded to a common K for the all-gather
(``jina5.training.distributed``): the padding rows of ``negatives`` (and ``teacher_negatives`` /
``base_negatives``) are zero vectors, and every loss that reads negatives drops those where the mask
is False (``real_negatives``; InfoNCE masks their logits to -inf). Without it every negative is real.

A **texts-only batch** (``query`` None) holds B single texts in the document fields: ``document``
(B, D), ``teacher_document`` (B, Dt), ``base_document``, ``document_ids``; it has no pair, so every
field of ``PAIR_FIELDS`` is None. Only losses that need no pair (``needs_pairs = False``, e.g.
distillation, one term per text) run on it (``jina5.training.objective``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor


@dataclass
class EmbeddingBatch:
    """Embeddings of one training batch; see the module docstring for every field's shape."""

    query: Tensor | None
    document: Tensor
    negatives: Tensor | None = None
    teacher_query: Tensor | None = None
    teacher_document: Tensor | None = None
    teacher_negatives: Tensor | None = None
    scores: Tensor | None = None
    base_query: Tensor | None = None
    base_document: Tensor | None = None
    base_negatives: Tensor | None = None
    query_ids: Tensor | None = None
    document_ids: Tensor | None = None
    negatives_mask: Tensor | None = None

    #: the tensors produced by the student; the only ones wrappers transform.
    STUDENT_FIELDS: ClassVar[tuple[str, ...]] = ("query", "document", "negatives")
    #: the fields only a (query, document) pair batch has: all None on a texts-only batch.
    PAIR_FIELDS: ClassVar[tuple[str, ...]] = (
        "query",
        "negatives",
        "negatives_mask",
        "teacher_query",
        "teacher_negatives",
        "scores",
        "base_query",
        "base_negatives",
        "query_ids",
    )

    def __post_init__(self) -> None:
        q, d = self.query, self.document
        if d.dim() != 2:
            raise ValueError(f"EmbeddingBatch.document must be (B, D), got shape {tuple(d.shape)}")
        if q is None:
            present = [f for f in self.PAIR_FIELDS if getattr(self, f) is not None]
            if present:
                raise ValueError(
                    f"EmbeddingBatch: a texts-only batch (query None) has no pairs, but {present} are set"
                )
        elif q.shape != d.shape:
            raise ValueError(
                f"EmbeddingBatch.document must match query's shape {tuple(q.shape)}, got {tuple(d.shape)}"
            )
        b, dim = d.shape
        if self.negatives is not None and (
            self.negatives.dim() != 3 or self.negatives.shape[0] != b or self.negatives.shape[2] != dim
        ):
            raise ValueError(
                f"EmbeddingBatch.negatives must be (B={b}, K, D={dim}), got {tuple(self.negatives.shape)}"
            )
        m = self.negatives_mask
        if m is not None and (
            self.negatives is None
            or m.dtype != torch.bool
            or tuple(m.shape) != tuple(self.negatives.shape[:2])
        ):
            want = (
                "None (no negatives)" if self.negatives is None else f"bool {tuple(self.negatives.shape[:2])}"
            )
            raise ValueError(f"EmbeddingBatch.negatives_mask must be {want}, got {m.dtype} {tuple(m.shape)}")
        for name in ("teacher_query", "teacher_document", "base_query", "base_document"):
            t = getattr(self, name)
            if t is not None and (t.dim() != 2 or t.shape[0] != b):
                raise ValueError(f"EmbeddingBatch.{name} must be (B={b}, dim), got {tuple(t.shape)}")
        for name in ("teacher_negatives", "base_negatives"):
            t = getattr(self, name)
            if t is not None and (t.dim() != 3 or t.shape[0] != b):
                raise ValueError(f"EmbeddingBatch.{name} must be (B={b}, K, dim), got {tuple(t.shape)}")
        for name in ("scores", "query_ids", "document_ids"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (b,):
                raise ValueError(f"EmbeddingBatch.{name} must be (B={b},), got {tuple(t.shape)}")

    @property
    def texts_only(self) -> bool:
        """True for a batch of single texts (no queries, no pairs); see the module docstring."""
        return self.query is None

    @property
    def batch_size(self) -> int:
        return self.document.shape[0]

    @property
    def dim(self) -> int:
        """Student embedding dim D (after any truncation a wrapper applied)."""
        return self.document.shape[1]

    def applicable(self, fields: tuple[str, ...]) -> tuple[str, ...]:
        """The ``fields`` this kind of batch can have: all of them for a pair batch; for a texts-only
        batch those outside ``PAIR_FIELDS`` (a per-text loss's ``requires`` on such a batch)."""
        return tuple(f for f in fields if not (self.texts_only and f in self.PAIR_FIELDS))

    def replace(self, **changes: Tensor | None) -> EmbeddingBatch:
        """A copy with the given fields replaced (``dataclasses.replace``; shapes are re-checked)."""
        return dataclasses.replace(self, **changes)

    def real_negatives(self, x: Tensor) -> Tensor:
        """The real negatives of ``x`` (B, K, dim) (``negatives`` or a reference of them), rows stacked:
        (B K, dim) without a mask, else the (N, dim) rows where ``negatives_mask`` is True, in the same
        row-major order."""
        flat = x.reshape(-1, x.shape[-1])
        return flat if self.negatives_mask is None else flat[self.negatives_mask.reshape(-1)]

    def map_student(self, fn: Callable[[Tensor], Tensor]) -> EmbeddingBatch:
        """Apply ``fn`` to every student-side tensor present (query, document, negatives).

        ``fn`` acts on the last (embedding) dim and must keep the leading dims; teacher and base
        vectors, scores and ids are passed through untouched.
        """
        return self.replace(
            **{
                name: fn(getattr(self, name))
                for name in self.STUDENT_FIELDS
                if getattr(self, name) is not None
            }
        )
