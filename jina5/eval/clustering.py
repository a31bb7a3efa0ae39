"""Clustering: V-measure (main) of k-means against the gold labels, MTEB style.

k = number of distinct labels. For every seed, ``MiniBatchKMeans(n_clusters=k, batch_size=500,
n_init=1, random_state=seed)`` clusters the embeddings and the record holds the mean over seeds
of ``v_measure`` = 2 * h * c / (h + c) (homogeneity h, completeness c; sklearn).

At most ``max_docs`` texts are used (a seeded random subset, the count is logged), encoded
once at full dim in float32 (``prompt="document"``); settings derive as in
:mod:`jina5.eval.metrics`: int8 = dequantized codes, binary = +-1 sign vectors (between two
such vectors the squared Euclidean distance k-means uses is 4 * their Hamming distance).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import numpy as np
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics import v_measure_score

from jina5.eval.items import clustering_items
from jina5.eval.metrics import Encode, encode_full, record, variants

log = logging.getLogger(__name__)


def evaluate_clustering(
    encode: Encode,
    texts: Sequence[str],
    labels: Sequence[Hashable],
    dims: Sequence[int | None] | None,
    precisions: Sequence[str],
    *,
    seeds: Sequence[int],
    batch_size: int,
    max_docs: int | None = 16384,  # MTEB's ClusteringFast embeds at most 16384 documents
    prompt: str | None = "document",
) -> list[dict]:
    """Mean V-measure over ``seeds`` of k-means clusterings per (dim, precision); the records carry
    ``items``: each seed's cluster of every text (:func:`jina5.eval.items.clustering_items`)."""
    if len(texts) != len(labels):
        raise ValueError(f"lengths differ: {len(texts)} texts, {len(labels)} labels")
    if not seeds:
        raise ValueError("clustering needs at least one seed")
    idx = np.arange(len(texts))
    if max_docs is not None and len(texts) > max_docs:
        idx = np.sort(np.random.default_rng(0).choice(len(texts), size=max_docs, replace=False))
        log.info("clustering: using %d of %d texts (max_docs)", max_docs, len(texts))
    y = [labels[i] for i in idx]
    k = len(set(y))
    if not 2 <= k <= len(y):
        raise ValueError(f"clustering needs 2 <= distinct labels <= texts, got {k} labels for {len(y)} texts")
    emb = encode_full(encode, [texts[i] for i in idx], prompt=prompt)
    records = []
    for dim, precision, (x,) in variants([emb], dims, precisions):
        scores, assigned = [], []
        for seed in seeds:
            km = MiniBatchKMeans(n_clusters=k, batch_size=batch_size, n_init=1, random_state=seed)
            assigned.append(km.fit_predict(x))
            scores.append(v_measure_score(y, assigned[-1]))
        v_measure = record("clustering", "v_measure", dim, precision, np.mean(scores))
        items = clustering_items(np.stack(assigned), [texts[i] for i in idx], y)
        records.append({**v_measure, "items": items})
    return records
