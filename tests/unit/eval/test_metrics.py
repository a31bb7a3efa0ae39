"""Ranking metrics against hand-computed values; truncation, quantized views, relative drops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jina5.eval.metrics import (
    dequantize_int8,
    mrr_at_k,
    ndcg_at_k,
    ndcg_per_query,
    precision_view,
    recall_at_k,
    relative_drops,
    sign_vectors,
    truncate,
    variants,
)
from jina5.model.quantize import calibration_ranges, quantize

# query 0: graded qrels, ranking hits grade 2 at rank 1, grade 3 at rank 3, grade 1 at rank 5.
QRELS = {0: {"a": 3, "b": 2, "c": 1, "x": 0}, 1: {"z": 1}, 2: {"y": 0}}
RANKED = {0: ["b", "n1", "a", "n2", "c", "n3"], 1: ["n1", "n2", "z"]}


def test_ndcg_graded_hand_computed():
    # DCG@5 = 2/log2(2) + 3/log2(4) + 1/log2(6); IDCG@5 = 3/log2(2) + 2/log2(3) + 1/log2(4)
    dcg0 = 2 / 1 + 0 + 3 / 2 + 0 + 1 / math.log2(6)
    idcg0 = 3 / 1 + 2 / math.log2(3) + 1 / 2
    # query 1: one relevant doc at rank 3 -> DCG = 1/log2(4) = 0.5, IDCG = 1
    expected = (dcg0 / idcg0 + 0.5) / 2  # query 2 has no relevant doc: not scored
    assert ndcg_at_k(RANKED, QRELS, 5) == pytest.approx(expected, abs=1e-12)
    assert dcg0 / idcg0 == pytest.approx(0.8162463, abs=1e-6)  # written out once more


def test_ndcg_cutoff_and_ideal_truncated_at_k():
    # @2: query 0 DCG = 2/1 + 0, IDCG = 3/1 + 2/log2(3); query 1 DCG = 0
    expected = (2 / (3 + 2 / math.log2(3)) + 0.0) / 2
    assert ndcg_at_k(RANKED, QRELS, 2) == pytest.approx(expected, abs=1e-12)
    perfect = {0: ["a", "b", "c"], 1: ["z"]}
    assert ndcg_at_k(perfect, QRELS, 10) == pytest.approx(1.0)
    # swapping grades 3 and 2 at the top is not perfect
    assert ndcg_at_k({0: ["b", "a", "c"]}, {0: QRELS[0]}, 10) < 1.0


def test_ndcg_is_bit_identical_to_the_sum_over_every_ranked_document():
    """The DCG sums the relevant documents' terms only: the others add +0.0 (negative grades count 0)."""
    rng = np.random.default_rng(0)
    qrels = {
        q: {int(d): int(g) for d, g in zip(rng.choice(300, 6), rng.integers(-1, 4, 6), strict=True)}
        for q in range(50)
    }
    ranked = {q: rng.permutation(300)[:100].tolist() for q in qrels}
    for k in (10, 100):

        def every_term(rels, docs, k=k):
            dcg = sum(max(rels.get(d, 0), 0) / np.log2(i + 2) for i, d in enumerate(docs))
            ideal = sorted((max(r, 0) for r in rels.values()), reverse=True)[:k]
            return dcg / sum(r / np.log2(i + 2) for i, r in enumerate(ideal))

        scored = [q for q, rels in qrels.items() if any(g > 0 for g in rels.values())]
        assert ndcg_per_query(ranked, qrels, k) == [every_term(qrels[q], ranked[q][:k]) for q in scored]


def test_mrr_and_recall():
    assert mrr_at_k(RANKED, QRELS, 10) == pytest.approx((1 / 1 + 1 / 3) / 2)
    assert mrr_at_k(RANKED, QRELS, 2) == pytest.approx((1.0 + 0.0) / 2)  # z at rank 3 is cut
    assert recall_at_k(RANKED, QRELS, 3) == pytest.approx((2 / 3 + 1 / 1) / 2)
    assert recall_at_k(RANKED, QRELS, 1) == pytest.approx((1 / 3 + 0) / 2)
    assert recall_at_k(RANKED, QRELS, 100) == pytest.approx(1.0)


def test_missing_query_counts_as_empty_ranking():
    assert ndcg_at_k({0: ["a", "b", "c"]}, QRELS, 10) == pytest.approx(0.5)  # query 1 scores 0
    assert mrr_at_k({}, QRELS, 10) == 0.0
    with pytest.raises(ValueError):
        ndcg_at_k(RANKED, QRELS, 0)


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_truncate_full_dim_is_identity_and_slices_renormalise():
    emb = _unit(np.random.default_rng(0), 20, 64)
    assert np.array_equal(truncate(emb, 64), emb)
    assert np.array_equal(truncate(emb, None), emb)
    t = truncate(emb, 16)
    assert t.shape == (20, 16) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(t * np.linalg.norm(emb[:, :16], axis=1, keepdims=True), emb[:, :16], atol=1e-6)
    for bad in (0, 65):
        with pytest.raises(ValueError):
            truncate(emb, bad)


def test_int8_view_is_close_and_binary_view_is_hamming():
    rng = np.random.default_rng(1)
    emb = _unit(rng, 50, 32)
    ranges = calibration_ranges(emb)
    deq = dequantize_int8(quantize(emb, "int8", ranges), ranges)
    assert np.all(np.abs(deq - emb) <= (ranges[1] - ranges[0]) / 510 + 1e-6)
    np.testing.assert_array_equal(precision_view(emb, "int8", ranges), deq)

    s = sign_vectors(emb[:, :13])  # 13 dims: packbits pads to 16 bits, unpack must drop them
    assert s.shape == (50, 13) and set(np.unique(s)) <= {-1.0, 1.0}
    ham = (np.where(emb[:, None, :13] > 0, 1, 0) != np.where(emb[None, :, :13] > 0, 1, 0)).sum(-1)
    np.testing.assert_allclose(s @ s.T / 13, 1 - 2 * ham / 13, atol=1e-6)
    np.testing.assert_array_equal(precision_view(emb, "binary"), precision_view(emb, "ubinary"))
    with pytest.raises(ValueError):
        precision_view(emb, "fp8")


def test_variants_share_int8_ranges_across_arrays():
    rng = np.random.default_rng(2)
    a, b = _unit(rng, 10, 16), _unit(rng, 30, 16)
    got = {(d, p): v for d, p, v in variants([a, b], [16, 8], ["float32", "int8"])}
    assert set(got) == {(16, "float32"), (16, "int8"), (8, "float32"), (8, "int8")}
    ranges = calibration_ranges(np.concatenate([truncate(a, 8), truncate(b, 8)]))
    np.testing.assert_array_equal(got[8, "int8"][0], precision_view(truncate(a, 8), "int8", ranges))
    np.testing.assert_array_equal(got[16, "float32"][1], b)


def test_relative_drops():
    recs = [
        {"task": "sts", "metric": "spearman", "dim": 64, "precision": "float32", "value": 0.8},
        {"task": "sts", "metric": "spearman", "dim": 32, "precision": "float32", "value": 0.6},
        {"task": "sts", "metric": "spearman", "dim": 64, "precision": "binary", "value": 0.7},
        {"task": "sts", "metric": "pearson", "dim": 64, "precision": "binary", "value": 0.5},
        {
            "task": "sts",
            "dataset": "other",
            "metric": "spearman",
            "dim": 64,
            "precision": "float32",
            "value": 0.4,
        },
        {
            "task": "sts",
            "dataset": "other",
            "metric": "spearman",
            "dim": 64,
            "precision": "int8",
            "value": 0.5,
        },
    ]
    out = relative_drops(recs)
    assert [r["relative_drop"] for r in out] == pytest.approx(
        [0.0, 0.25, 0.125, None, 0.0, -0.25], nan_ok=True
    )
    assert "relative_drop" not in recs[0]  # inputs are not modified
