"""Task evaluators with planted / random fake encoders, checked against sklearn, scipy and numpy."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.cluster import MiniBatchKMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, v_measure_score
from threadpoolctl import threadpool_limits

from jina5.eval.classification import evaluate_classification, undersample
from jina5.eval.clustering import evaluate_clustering
from jina5.eval.items import ItemScores
from jina5.eval.metrics import truncate
from jina5.eval.retrieval import evaluate_retrieval, hamming_search, ip_search, search
from jina5.eval.sts import evaluate_sts
from jina5.model.quantize import quantize

DIM = 64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny problems: OpenMP/BLAS threads only add spin-wait overhead (seconds on a busy 2-core box)."""
    with threadpool_limits(1):
        yield


# The evaluators take every setting explicitly (the suite passes conf/eval/default.yaml's); MTEB's here.
RETRIEVAL = {"k_values": (10, 100), "rescore": None}
CLASSIFICATION = {"n_per_class": 8, "seeds": (0, 1, 2), "max_iter": 100}
CLUSTERING = {"seeds": (0, 1, 2), "batch_size": 500}


def _vec(key: str, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(zlib.crc32(key.encode())).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


class FakeEncoder:
    """encode(texts, prompt, dim, precision) from a text -> unit vector map; records its calls."""

    def __init__(self, key=lambda text: text):
        self.key = key
        self.calls: list[tuple[int, str | None]] = []

    def __call__(self, texts, prompt=None, dim=None, precision="float32"):
        self.calls.append((len(texts), prompt))
        emb = truncate(np.stack([_vec(self.key(t)) for t in texts]), dim)
        return quantize(emb, precision)


def planted(text: str) -> str:
    """'q:17' and 'd:17' share one vector: the perfect retriever."""
    return text.split(":", 1)[1]


def by_value(records, metric, precision="float32", dim=DIM):
    (v,) = [
        r["value"] for r in records if (r["metric"], r["precision"], r["dim"]) == (metric, precision, dim)
    ]
    return v


def by_record(records, metric, precision="float32", dim=DIM) -> dict:
    (r,) = [r for r in records if (r["metric"], r["precision"], r["dim"]) == (metric, precision, dim)]
    return r


# ---------------------------------------------------------------------------- retrieval
def _retrieval_data(n=200, n_queries=100):
    queries = [f"q:{i}" for i in range(n_queries)]
    corpus = [f"d:{i}" for i in range(n)]
    qrels = {i: {i: 1} for i in range(n_queries)}
    return queries, corpus, qrels


def test_planted_encoder_is_perfect_at_every_setting():
    queries, corpus, qrels = _retrieval_data()
    enc = FakeEncoder(planted)
    recs = evaluate_retrieval(
        enc, queries, corpus, qrels, [DIM, 32], ["float32", "int8", "binary", "ubinary"], **RETRIEVAL
    )
    assert enc.calls == [(100, "query"), (200, "document")]  # encoded once
    assert len(recs) == 2 * 4 * 6
    for r in recs:
        assert r["task"] == "retrieval" and r["value"] == pytest.approx(1.0), r


def test_random_encoder_scores_chance():
    queries, corpus, qrels = _retrieval_data()
    recs = evaluate_retrieval(FakeEncoder(), queries, corpus, qrels, None, ["float32", "binary"], **RETRIEVAL)
    for p in ("float32", "binary"):
        # chance: one relevant doc of 200 -> E[nDCG@10] = sum_i (1/200) / log2(i+1) = 0.023,
        # E[recall@100] = 100/200 = 0.5, std over 100 queries 0.05
        assert by_value(recs, "ndcg@10", p) < 0.1
        assert 0.35 < by_value(recs, "recall@100", p) < 0.65


def test_k_capped_at_corpus_size_and_graded_qrels():
    queries, corpus, _ = _retrieval_data(n=20, n_queries=5)
    qrels = {0: {0: 2, 7: 1}, 3: {3: 1}, 4: {}}  # query 4 has nothing relevant: skipped
    enc = FakeEncoder(planted)
    recs = evaluate_retrieval(enc, queries, corpus, qrels, None, ["float32"], **RETRIEVAL)
    assert enc.calls[0] == (2, "query")
    assert by_value(recs, "recall@100") == 1.0  # the whole corpus of 20 is ranked
    x = np.eye(20, dtype=np.float32)
    for p in ("float32", "int8", "binary"):
        assert sorted(search(x, x, p, 100, rescore=5)[0].tolist()) == list(range(20))
    assert by_value(recs, "mrr@10") == 1.0
    assert by_value(recs, "ndcg@10") < 1.0  # doc 7 (grade 1) is random, not at rank 2
    with pytest.raises(ValueError, match="outside"):
        evaluate_retrieval(enc, queries, corpus, {0: {20: 1}}, None, ["float32"], **RETRIEVAL)


def test_hamming_search_matches_numpy_brute_force():
    rng = np.random.default_rng(0)
    q, d = rng.standard_normal((30, 24)), rng.standard_normal((300, 24))
    k = 10
    dist, ids = hamming_search(quantize(q, "ubinary"), quantize(d, "ubinary"), k)
    brute = ((q[:, None, :] > 0) != (d[None, :, :] > 0)).sum(-1)  # (30, 300) Hamming distances
    order = np.lexsort((np.broadcast_to(np.arange(300), brute.shape), brute), axis=-1)[:, :k]
    np.testing.assert_array_equal(dist, np.take_along_axis(brute, order, axis=1))  # same top-k distances
    np.testing.assert_array_equal(np.take_along_axis(brute, ids, axis=1), dist)  # ids have those distances
    for i in range(30):  # same ids, except for ties at the k-th distance
        sure = brute[i] < dist[i, -1]
        assert set(ids[i][dist[i] < dist[i, -1]]) == set(np.flatnonzero(sure))
    # where the k-th distance is not tied, the whole top-k is identical (ties ordered by index)
    untied = [i for i in range(30) if (brute[i] == dist[i, -1]).sum() == (dist[i] == dist[i, -1]).sum()]
    assert untied
    np.testing.assert_array_equal(ids[untied], order[untied])


def test_search_binary_and_int8_paths_are_quantized():
    rng = np.random.default_rng(1)
    q = truncate(rng.standard_normal((40, 16)), None)
    d = rng.standard_normal((150, 16)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    float_ids = ip_search(q, d, 10)[1]
    bin_ids = search(q, d, "binary", 10)
    assert not np.array_equal(bin_ids, float_ids)  # 16 sign bits lose information
    int8_ids = search(q, d, "int8", 10)
    assert (int8_ids[:, 0] == float_ids[:, 0]).mean() > 0.9  # int8 is nearly lossless


def test_rescoring_the_whole_corpus_recovers_float_ranking():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((40, 32)).astype(np.float32)
    d = rng.standard_normal((120, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    float_ids = search(q, d, "float32", 100)
    for precision in ("binary", "int8"):
        np.testing.assert_array_equal(search(q, d, precision, 100, rescore=120), float_ids)
        np.testing.assert_array_equal(search(q, d, precision, 100, rescore=10_000), float_ids)
    partial = search(q, d, "binary", 100, rescore=20)  # only the first 20 are re-ranked
    plain = search(q, d, "binary", 100)
    np.testing.assert_array_equal(np.sort(partial[:, :20]), np.sort(plain[:, :20]))
    np.testing.assert_array_equal(partial[:, 20:], plain[:, 20:])

    queries, corpus, qrels = _retrieval_data(n=120, n_queries=40)
    recs = evaluate_retrieval(
        FakeEncoder(), queries, corpus, qrels, None, ["float32", "binary"], k_values=(10, 100), rescore=120
    )
    for m in ("ndcg@10", "mrr@10", "recall@100"):
        assert by_value(recs, m, "binary") == by_value(recs, m, "float32")


# ---------------------------------------------------------------------------- STS
def _sts_data(n=80):
    rng = np.random.default_rng(3)
    a = [f"a{i}" for i in range(n)]
    b = [f"b{i}" for i in range(n)]
    return a, b, rng.uniform(0, 5, n).tolist()


def test_sts_matches_scipy_and_binary_equals_negative_hamming():
    a, b, y = _sts_data()
    recs = evaluate_sts(FakeEncoder(), a, b, y, [DIM, 16], ["float32", "int8", "binary"])
    ea, eb = np.stack([_vec(t) for t in a]), np.stack([_vec(t) for t in b])
    cos = (ea * eb).sum(1)
    assert by_value(recs, "spearman") == pytest.approx(spearmanr(cos, y).statistic, abs=1e-9)
    assert by_value(recs, "pearson") == pytest.approx(pearsonr(cos, y).statistic, abs=1e-6)
    ta, tb = truncate(ea, 16), truncate(eb, 16)
    assert by_value(recs, "spearman", dim=16) == pytest.approx(spearmanr((ta * tb).sum(1), y).statistic)
    neg_ham = -((ta > 0) != (tb > 0)).sum(1)
    assert by_value(recs, "spearman", "binary", 16) == pytest.approx(spearmanr(neg_ham, y).statistic)
    assert by_value(recs, "pearson", "binary", 16) == pytest.approx(pearsonr(neg_ham, y).statistic)
    assert abs(by_value(recs, "spearman", "int8") - by_value(recs, "spearman")) < 0.05


def test_truncation_equals_encoding_at_that_dim():
    a, b, y = _sts_data()
    enc = FakeEncoder()
    full = evaluate_sts(enc, a, b, y, [DIM, 16], ["float32", "binary"])
    assert enc.calls == [(160, "document")]
    small = lambda texts, prompt=None: enc(texts, prompt=prompt, dim=16)  # noqa: E731
    direct = evaluate_sts(small, a, b, y, None, ["float32", "binary"])
    for r in direct:
        assert by_value(full, r["metric"], r["precision"], 16) == pytest.approx(r["value"], abs=1e-9)
    # the full dim setting is the untruncated vectors
    assert evaluate_sts(enc, a, b, y, [DIM], ["float32"]) == evaluate_sts(enc, a, b, y, None, ["float32"])


# ---------------------------------------------------------------------------- classification
def _labelled(n_per_label, n_labels, prefix, separable):
    texts = [f"{prefix}{c}-{i}" for c in range(n_labels) for i in range(n_per_label)]
    labels = [f"class{c}" for c in range(n_labels) for _ in range(n_per_label)]

    def key(text):
        return text.split("-")[0][len(prefix) :] if separable else text

    return texts, labels, key


def test_undersample():
    labels = ["a"] * 20 + ["b"] * 3 + ["c"] * 10
    idx = undersample(labels, 8, seed=0)
    counts = {lab: sum(labels[i] == lab for i in idx) for lab in "abc"}
    assert counts == {"a": 8, "b": 3, "c": 8}
    assert set(idx) != set(undersample(labels, 8, seed=1))


def test_classification_random_is_chance_and_matches_sklearn():
    train, y_train, _ = _labelled(50, 4, "tr", separable=False)
    test, y_test, _ = _labelled(100, 4, "te", separable=False)
    enc = FakeEncoder()
    recs = evaluate_classification(
        enc,
        train,
        y_train,
        test,
        y_test,
        None,
        ["float32", "binary"],
        n_per_class=8,
        seeds=(0, 1, 2),
        max_iter=100,
    )
    assert enc.calls[1] == (400, "document") and enc.calls[0][0] <= 3 * 32
    for p in ("float32", "binary"):
        assert abs(by_value(recs, "accuracy", p) - 1 / 4) < 0.08  # chance 1/C, std ~0.02
    x_test = np.stack([_vec(t) for t in test])
    accs = []
    for seed in (0, 1, 2):
        idx = undersample(y_train, 8, seed)
        clf = LogisticRegression(max_iter=100, random_state=seed)
        clf.fit(np.stack([_vec(train[i]) for i in idx]), [y_train[i] for i in idx])
        accs.append(accuracy_score(y_test, clf.predict(x_test)))
    assert by_value(recs, "accuracy") == pytest.approx(np.mean(accs), abs=1e-12)


def test_classification_separable_is_perfect():
    _, y_train, _ = _labelled(50, 4, "c", separable=True)
    train, _, key = _labelled(50, 4, "c", separable=True)
    test, y_test, _ = _labelled(20, 4, "c", separable=True)
    enc = FakeEncoder(key)  # every text of a class gets the class vector
    recs = evaluate_classification(
        enc, train, y_train, test, y_test, [DIM, 8], ["float32", "int8", "binary"], **CLASSIFICATION
    )
    for r in recs:
        assert r["value"] == pytest.approx(1.0), r


# ---------------------------------------------------------------------------- clustering
def test_clustering_random_is_chance_and_matches_sklearn():
    texts, labels, _ = _labelled(60, 5, "x", separable=False)
    recs = evaluate_clustering(
        FakeEncoder(), texts, labels, None, ["float32", "binary"], seeds=(0, 1), batch_size=500
    )
    for p in ("float32", "binary"):
        assert by_value(recs, "v_measure", p) < 0.1
    x = np.stack([_vec(t) for t in texts])
    expected = np.mean(
        [
            v_measure_score(
                labels, MiniBatchKMeans(5, batch_size=500, n_init=1, random_state=s).fit_predict(x)
            )
            for s in (0, 1)
        ]
    )
    assert by_value(recs, "v_measure") == pytest.approx(expected, abs=1e-12)


def test_clustering_separable_and_max_docs():
    texts, labels, key = _labelled(30, 4, "x", separable=True)

    def noisy(texts, prompt=None):  # class vector + small per-text noise
        return truncate(np.stack([_vec(key(t)) + 0.1 * _vec(t) for t in texts]), None)

    recs = evaluate_clustering(noisy, texts, labels, [DIM, 16], ["float32", "int8", "binary"], **CLUSTERING)
    for r in recs:
        assert r["value"] > 0.9, r
    enc = FakeEncoder()
    evaluate_clustering(enc, texts, labels, None, ["float32"], max_docs=50, **CLUSTERING)
    assert enc.calls == [(50, "document")]


# ---------------------------------------------------------------------------- per-item scores
def assert_items_recompute_every_value(records, metric: str, n_items: int) -> None:
    """Each ``metric`` record carries items whose full-sample metric is its value; the items are the
    same (identity) at every setting."""
    main = [r for r in records if r["metric"] == metric]
    assert main and all(isinstance(r.get("items"), ItemScores) for r in main)
    for r in main:
        assert r["items"].n_items == n_items
        assert r["items"].metric() == pytest.approx(r["value"], abs=1e-12), (r["dim"], r["precision"])
    assert len({r["items"].identity for r in main}) == 1


SETTINGS = ([DIM, 16], ["float32", "int8", "binary"])


def test_retrieval_items_are_the_scored_queries_ndcg():
    queries, corpus, _ = _retrieval_data(n=60, n_queries=30)
    qrels = {i: {i: 1, (i + 1) % 60: 1} for i in range(29)} | {29: {}}  # query 29: nothing relevant
    recs = evaluate_retrieval(FakeEncoder(), queries, corpus, qrels, *SETTINGS, **RETRIEVAL)
    assert_items_recompute_every_value(recs, "ndcg@10", 29)
    assert_items_recompute_every_value(recs, "ndcg@100", 29)
    assert all("items" not in r for r in recs if not r["metric"].startswith("ndcg"))
    # the items are in qrels order: another order is other items
    reordered = {q: qrels[q] for q in reversed(qrels)}
    again = evaluate_retrieval(FakeEncoder(), queries, corpus, reordered, None, ["float32"], **RETRIEVAL)
    np.testing.assert_array_equal(again[0]["items"].arrays["ndcg"], recs[0]["items"].arrays["ndcg"][::-1])
    assert again[0]["items"].identity != recs[0]["items"].identity


def test_sts_items_are_the_pair_cosines_and_scores():
    a, b, y = _sts_data()
    recs = evaluate_sts(FakeEncoder(), a, b, y, *SETTINGS)
    assert_items_recompute_every_value(recs, "spearman", len(y))
    items = by_record(recs, "spearman", "float32", DIM)["items"]
    ea, eb = np.stack([_vec(t) for t in a]), np.stack([_vec(t) for t in b])
    np.testing.assert_allclose(items.arrays["predicted"], (ea * eb).sum(1), atol=1e-6)
    np.testing.assert_array_equal(items.arrays["gold"], y)


def test_classification_items_are_each_seeds_right_answers():
    train, y_train, _ = _labelled(30, 3, "tr", separable=False)
    test, y_test, _ = _labelled(40, 3, "te", separable=False)
    recs = evaluate_classification(FakeEncoder(), train, y_train, test, y_test, *SETTINGS, **CLASSIFICATION)
    assert_items_recompute_every_value(recs, "accuracy", len(test))
    correct = by_record(recs, "accuracy", "float32", DIM)["items"].arrays["correct"]
    assert correct.shape == (3, len(test)) and correct.dtype == bool
    x_test = np.stack([_vec(t) for t in test])
    idx = undersample(y_train, 8, 1)
    clf = LogisticRegression(max_iter=100, random_state=1)
    clf.fit(np.stack([_vec(train[i]) for i in idx]), [y_train[i] for i in idx])
    np.testing.assert_array_equal(correct[1], clf.predict(x_test) == np.asarray(y_test))  # seed 1's probe


def test_clustering_items_are_each_seeds_clusters():
    texts, labels, _ = _labelled(30, 4, "x", separable=False)
    recs = evaluate_clustering(FakeEncoder(), texts, labels, *SETTINGS, **CLUSTERING)
    assert_items_recompute_every_value(recs, "v_measure", len(texts))
    items = by_record(recs, "v_measure", "float32", DIM)["items"]
    x = np.stack([_vec(t) for t in texts])
    km = MiniBatchKMeans(4, batch_size=500, n_init=1, random_state=2).fit_predict(x)
    np.testing.assert_array_equal(items.arrays["assigned"][2], km)
    assert v_measure_score(items.arrays["gold"], km) == pytest.approx(v_measure_score(labels, km))
