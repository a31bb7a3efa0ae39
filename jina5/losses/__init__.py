"""Pluggable losses: each is an nn.Module mapping an EmbeddingBatch to a scalar.

Wrappers (``Matryoshka``, ``BinaryAware``) wrap any of them; the config names them by class
(``_target_: jina5.losses.InfoNCE``, conf/objective/).
A loss may declare ``requires`` (batch fields that must not be None), ``needs_pairs`` (default True;
False for a loss that is a sum of per-text terms and so also trains on texts-only batches, as
distillation does) and ``log_values()`` (extra scalars to log, e.g. InfoNCE's temperature); the
Objective uses all three.
"""

from __future__ import annotations

from jina5.losses.batch import EmbeddingBatch
from jina5.losses.cosent import CoSENT
from jina5.losses.distill import EmbeddingDistillation
from jina5.losses.gor import GlobalOrthogonal
from jina5.losses.infonce import InfoNCE
from jina5.losses.relational import RelationalDistillation
from jina5.losses.score_distill import ScoreDistillation
from jina5.losses.wrappers import BinaryAware, Matryoshka, straight_through_sign

__all__ = [
    "BinaryAware",
    "CoSENT",
    "EmbeddingBatch",
    "EmbeddingDistillation",
    "GlobalOrthogonal",
    "InfoNCE",
    "Matryoshka",
    "RelationalDistillation",
    "ScoreDistillation",
    "straight_through_sign",
]
