"""Semantic textual similarity: Spearman (main) and Pearson of cosine vs human scores.

For pairs (a_i, b_i) with human score y_i, s_i = cos(a_i, b_i) = a_i . b_i / (|a_i| |b_i|) and the
records hold ``spearman`` = rho(s, y) and ``pearson`` = r(s, y) (scipy), per (dim, precision).
All texts are encoded once (``prompt="document"``, as every non-retrieval task) at full dim in
float32; the settings are derived as in :mod:`jina5.eval.metrics`:

- int8: cosine of the dequantized codes (one set of calibration ranges from all texts).
- binary / ubinary: cosine of the +-1 sign vectors, which is 1 - 2 * hamming / d, an affine map
  of the negative Hamming distance, so both correlations equal those of -hamming.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr

from jina5.eval.items import sts_items
from jina5.eval.metrics import Encode, encode_full, record, variants


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) cosine of rows a[i], b[i] of two (N, D) arrays (0 where a row is all zero)."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.einsum("nd,nd->n", a, b) / np.where(norms > 0, norms, 1.0)


def evaluate_sts(
    encode: Encode,
    texts_a: Sequence[str],
    texts_b: Sequence[str],
    scores: Sequence[float],
    dims: Sequence[int | None] | None,
    precisions: Sequence[str],
    prompt: str | None = "document",
) -> list[dict]:
    """Spearman and Pearson correlation of pair cosines with ``scores`` for every (dim, precision); the
    ``spearman`` records carry ``items``: the pair cosines and scores (:func:`jina5.eval.items.sts_items`)."""
    if not len(texts_a) == len(texts_b) == len(scores):
        raise ValueError(
            f"lengths differ: {len(texts_a)} texts_a, {len(texts_b)} texts_b, {len(scores)} scores"
        )
    if len(scores) < 2:
        raise ValueError("STS needs at least 2 pairs")
    y = np.asarray(scores, dtype=np.float64)
    emb = encode_full(encode, list(texts_a) + list(texts_b), prompt=prompt)
    n = len(texts_a)
    records = []
    for dim, precision, (view,) in variants([emb], dims, precisions):
        cosine = paired_cosine(view[:n], view[n:])
        sim = cosine.astype(np.float64)
        spearman = record("sts", "spearman", dim, precision, spearmanr(sim, y).statistic)
        records.append({**spearman, "items": sts_items(cosine, y, texts_a, texts_b)})
        records.append(record("sts", "pearson", dim, precision, pearsonr(sim, y).statistic))
    return records
