"""(query, document) pairs with their cached teacher vectors, as the training module asks for them: the
dev slice of the in-training check (``load_dev_pairs``) and the sample the distillation projection is
warm-started on (``distillation_sample``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jina5.data.pairs import DatasetSpec, PairTable, load_pair_table


@dataclass
class TextPairs:
    """k (query, document) pairs with their cached teacher vectors: the dev slice of the in-training
    check, and the sample the distillation projection is fitted on."""

    queries: list[str]  # k texts, encoded with the query prompt
    documents: list[str]  # their k documents, encoded with the document prompt
    teacher_query: np.ndarray | None = None  # (k, Dt) float32; None without a teacher
    teacher_document: np.ndarray | None = None  # (k, Dt) float32


def load_dev_pairs(dev_datasets: Sequence[str], dev_pairs: int, split_seed: int) -> TextPairs | None:
    """``dev_pairs`` pairs of each ``dev_datasets`` corpus's dev split (None: no dev pair)."""
    dev_q, dev_d = [], []
    for name in dev_datasets:
        table = load_pair_table(DatasetSpec(name, max_rows=dev_pairs), "dev", split_seed, 0)
        dev_q += table.queries
        dev_d += table.documents
    return TextPairs(dev_q, dev_d) if dev_q else None


def distillation_sample(tables: Sequence[PairTable], n_texts: int) -> TextPairs | None:
    """``k = min(n_texts // 2, rows)`` training pairs (so ``2k`` texts) with their teacher vectors.

    The rows are a draw without replacement from all (dataset, row) keys of the mix's pair tables
    (texts-only tables have no pairs), in mix order, by ``np.random.default_rng(0)``: the same for
    every training seed, and no global RNG is touched. None when the tables carry no teacher vectors
    (no teacher), are not set up, or are all texts-only.
    """
    if not tables or tables[0].teacher_document is None:
        return None
    rng = np.random.default_rng(0)
    keys = [
        (t, r)
        for t, table in enumerate(tables)
        if not table.texts_only and not table.rank_local  # the same sample on every rank
        for r in range(len(table))
    ]
    if not keys:
        return None
    picks = [keys[i] for i in rng.choice(len(keys), size=min(n_texts // 2, len(keys)), replace=False)]
    return TextPairs(
        queries=[tables[t].queries[r] for t, r in picks],
        documents=[tables[t].documents[r] for t, r in picks],
        teacher_query=np.stack([tables[t].teacher_query[r] for t, r in picks]),
        teacher_document=np.stack([tables[t].teacher_document[r] for t, r in picks]),
    )
