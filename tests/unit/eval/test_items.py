"""Per-item scores (jina5.eval.items): a resample's metric equals the metric of the duplicated items
(scipy, sklearn), files round-trip, and the store keeps them in its sidecar."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import v_measure_score

from jina5.eval.items import (
    ItemScores,
    classification_items,
    clustering_items,
    load_items,
    retrieval_items,
    save_items,
    sts_items,
)
from jina5.eval.store import ResultsStore

N = 90


def draws(n: int = N, b: int = 25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(B, n) drawn indices, with replacement, and the (B, n) counts they give."""
    idx = np.random.default_rng(seed).integers(0, n, size=(b, n))
    return idx, np.stack([np.bincount(row, minlength=n) for row in idx])


def texts(n: int = N) -> list[str]:
    return [f"t{i}" for i in range(n)]


def test_retrieval_and_classification_resamples_are_means_of_the_drawn_items():
    rng = np.random.default_rng(1)
    idx, counts = draws()
    ndcg = rng.uniform(0, 1, N)
    np.testing.assert_allclose(
        retrieval_items(ndcg, texts(), ["d"]).resampled(counts), ndcg[idx].mean(axis=1), atol=1e-12
    )
    correct = rng.random((3, N)) < 0.6
    accuracy = np.mean([c[idx].mean(axis=1) for c in correct], axis=0)  # per seed, then over seeds
    items = classification_items(correct, texts(), ["a"] * N)
    np.testing.assert_allclose(items.resampled(counts), accuracy, atol=1e-12)
    assert items.metric() == pytest.approx(correct.mean())


def test_sts_resample_is_spearman_of_the_duplicated_pairs_ties_included():
    rng = np.random.default_rng(2)
    idx, counts = draws()
    predicted = rng.standard_normal(N).astype(np.float32)
    predicted[10] = predicted[11]  # a tie in the cosines too
    gold = rng.integers(0, 5, N).astype(float)  # many ties, as human scores
    items = sts_items(predicted, gold, texts(), texts())
    expected = [spearmanr(predicted[row].astype(np.float64), gold[row]).statistic for row in idx]
    np.testing.assert_allclose(items.resampled(counts), expected, atol=1e-12)
    assert items.metric() == pytest.approx(spearmanr(predicted, gold).statistic, abs=1e-12)


def test_clustering_resample_is_v_measure_of_the_duplicated_documents():
    rng = np.random.default_rng(3)
    idx, counts = draws()
    labels = rng.integers(0, 5, N)
    assigned = np.stack([np.where(rng.random(N) < 0.6, labels, rng.integers(0, 5, N)) for _ in range(2)])
    items = clustering_items(assigned, texts(), [f"label{v}" for v in labels])
    expected = [np.mean([v_measure_score(labels[row], a[row]) for a in assigned]) for row in idx]
    np.testing.assert_allclose(items.resampled(counts), expected, atol=1e-12)
    # edge cases as sklearn: one cluster (h = 0 -> v = 0), one label drawn (h = 1)
    one_cluster = clustering_items(np.zeros((1, N), int), texts(), labels)
    assert one_cluster.metric() == v_measure_score(labels, np.zeros(N, int)) == 0.0
    only_first = np.zeros((1, N))
    only_first[0, 0] = N
    assert items.resampled(only_first)[0] == pytest.approx(
        np.mean([v_measure_score(labels[[0] * N], a[[0] * N]) for a in assigned])
    )


def test_items_validate_and_compare():
    with pytest.raises(ValueError, match="need arrays"):
        ItemScores("sts", "x", {"predicted": np.zeros(3)})
    with pytest.raises(ValueError, match="item count"):
        ItemScores("sts", "x", {"predicted": np.zeros(3), "gold": np.zeros(4)})
    with pytest.raises(ValueError, match="no per-item scores"):
        ItemScores("pair_classification", "x", {})
    a = retrieval_items([0.5, 1.0], ["q1", "q2"], ["d"])
    assert a == retrieval_items([0.5, 1.0], ["q1", "q2"], ["d"])
    assert a != retrieval_items([0.5, 0.0], ["q1", "q2"], ["d"])
    assert a.identity != retrieval_items([0.5, 1.0], ["q2", "q1"], ["d"]).identity
    assert a.identity != retrieval_items([0.5, 1.0], ["q1", "q2"], ["other corpus"]).identity
    with pytest.raises(ValueError, match=r"counts must be \(B, 2\)"):
        a.resampled(np.ones((1, 3)))


def test_items_file_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, N)
    by_setting = {
        (dim, p): clustering_items(rng.integers(0, 3, (2, N)), texts(), labels)
        for dim in (32, 64)
        for p in ("float32", "binary")
    }
    save_items(tmp_path / "x.npz", by_setting)
    back = load_items(tmp_path / "x.npz")
    assert back == by_setting
    assert not list(tmp_path.glob(".*tmp"))
    other = {(32, "float32"): clustering_items(labels[None], texts(N)[::-1], labels)}
    with pytest.raises(ValueError, match="share its task type and identity"):
        save_items(tmp_path / "y.npz", {**by_setting, **other})


def test_store_keeps_items_in_its_sidecar(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    items = {(8, "float32"): retrieval_items([0.25, 0.75], ["q1", "q2"], ["d"])}
    ref = store.write_items("run/1 x", "ab" * 32, items)
    assert ref == f"results.items/run_1_x/{'ab' * 12}.npz" and (tmp_path / ref).is_file()
    assert (
        store.has_items(ref) and not store.has_items(None) and not store.has_items("results.items/none.npz")
    )
    assert store.read_items(ref) == items
    record = {"task": "retrieval", "dataset": "d", "language": None, "split": "test", "metric": "ndcg@10"}
    record |= {"dim": 8, "precision": "float32", "value": 0.5}
    run = {"run_id": "r", "experiment": "e", "seed": 0, "model": "m"}
    store.append([{**record, "items": ref}], run)
    assert store.read()["items"].tolist() == [ref]
    with pytest.raises(TypeError, match="must name a sidecar file"):
        store.append([{**record, "items": items[(8, "float32")]}], run)  # never inline arrays
