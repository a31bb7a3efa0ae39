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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor


@dataclass
class EmbeddingBatch:
    """Embeddings of one training batch; see the module docstring for every field's shape."""

    query: Tensor
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

    #: the tensors produced by the student; the only ones wrappers transform.
    STUDENT_FIELDS: ClassVar[tuple[str, ...]] = ("query", "document", "negatives")

    def __post_init__(self) -> None:
        q, d = self.query, self.document
        if q.dim() != 2:
            raise ValueError(f"EmbeddingBatch.query must be (B, D), got shape {tuple(q.shape)}")
        if d.shape != q.shape:
            raise ValueError(
                f"EmbeddingBatch.document must match query's shape {tuple(q.shape)}, got {tuple(d.shape)}"
            )
        b, dim = q.shape
        if self.negatives is not None and (
            self.negatives.dim() != 3 or self.negatives.shape[0] != b or self.negatives.shape[2] != dim
        ):
            raise ValueError(
                f"EmbeddingBatch.negatives must be (B={b}, K, D={dim}), got {tuple(self.negatives.shape)}"
            )
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
    def batch_size(self) -> int:
        return self.query.shape[0]

    @property
    def dim(self) -> int:
        """Student embedding dim D (after any truncation a wrapper applied)."""
        return self.query.shape[1]

    def replace(self, **changes: Tensor | None) -> EmbeddingBatch:
        """A copy with the given fields replaced (``dataclasses.replace``; shapes are re-checked)."""
        return dataclasses.replace(self, **changes)

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
