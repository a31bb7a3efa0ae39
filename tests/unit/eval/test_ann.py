"""Approximate search in the retrieval evaluation (issue 24): HNSW on floats, binary HNSW / IVF on sign bits
with float re-ranking, against the exact indexes; and the default suite unchanged (flat, same cache keys)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from jina5.conf import compose
from omegaconf import OmegaConf
from threadpoolctl import threadpool_limits

from jina5.eval.ann import ANN_KEYS, AnnIndex, evaluate_ann, overlap
from jina5.eval.metrics import precision_view
from jina5.eval.retrieval import hamming_search, ip_search, rescore_candidates
from jina5.eval.store import ResultsStore
from jina5.eval.suite import run_suite
from jina5.eval.task_types import REGISTRY
from jina5.eval.tasks import SUITE_VERSION, EvalTask, task_entries
from jina5.model.quantize import calibration_ranges, quantize

DEFAULTS = {"rescore_multiplier": 4, "rescore_docs": "float32", "hnsw_m": 32, "hnsw_ef_search": 64}
DEFAULTS.update(ivf_nlist=16, ivf_nprobe=4)


@pytest.fixture(autouse=True)
def _one_thread():
    with threadpool_limits(1):  # faiss builds and searches deterministically on one thread
        yield


def ann(index: str, **over) -> AnnIndex:
    return AnnIndex.from_settings({**DEFAULTS, "index": index, **over})


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n_docs=2000, n_queries=200, dim=64, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Documents around 40 centres, and queries near random documents: a realistic neighbour structure."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim))
    docs = unit(centres[rng.integers(0, 40, n_docs)] + 0.6 * rng.standard_normal((n_docs, dim)))
    queries = unit(docs[rng.integers(0, n_docs, n_queries)] + 0.3 * rng.standard_normal((n_queries, dim)))
    return queries, docs


@pytest.mark.parametrize(("index", "bound"), [("hnsw", 0.95), ("binary_hnsw", 0.9), ("binary_ivf", 0.6)])
def test_an_approximate_index_finds_most_of_the_exact_top_k(index, bound):
    """Recall of the exact top 10 (measured here: hnsw ~0.99, binary_hnsw ~0.9, binary_ivf visiting 4 of
    16 lists ~0.67; ids mapped wrongly would give ~0)."""
    queries, docs = clustered()
    got, exact, seconds = ann(index).search(queries, docs, 10)
    assert got.shape == exact.shape == (len(queries), 10)
    assert overlap(got, exact) >= bound
    assert all(v >= 0 for v in seconds.values())
    # the reference is the exact search of the same pipeline
    if index == "hnsw":
        np.testing.assert_array_equal(exact, ip_search(queries, docs, 10)[1])
    else:
        candidates = hamming_search(quantize(queries, "ubinary"), quantize(docs, "ubinary"), 40)[1]
        np.testing.assert_array_equal(exact, rescore_candidates(queries, docs, candidates)[:, :10])


def test_ivf_visiting_every_list_is_the_exact_hamming_search():
    """nprobe = nlist: the exact Hamming distances (which of several tied documents fills the last slots
    is the index's choice, so distances are compared, not ids)."""
    queries, docs = clustered(n_docs=500, n_queries=50)
    index = ann("binary_ivf", ivf_nlist=8, ivf_nprobe=8).build(docs)
    codes = quantize(queries, "ubinary")
    dist, ids = index.search(codes, 40)
    np.testing.assert_array_equal(dist, hamming_search(codes, quantize(docs, "ubinary"), 40)[0])
    hand = np.unpackbits(codes[:, None] ^ quantize(docs, "ubinary")[ids], axis=-1).sum(-1)
    np.testing.assert_array_equal(dist, hand)  # the ids are the documents at those distances


@pytest.mark.parametrize("index", ["hnsw", "binary_hnsw", "binary_ivf"])
def test_ids_are_corpus_positions(index):
    """A query equal to a document finds that document first, wherever it sits in a shuffled corpus
    (IVF stores documents list by list; the ids must still be corpus positions)."""
    _, docs = clustered(n_docs=600, n_queries=1, seed=1)
    order = np.random.default_rng(2).permutation(len(docs))
    shuffled = docs[order]
    probes = np.arange(0, 600, 37)
    got, exact, _ = ann(index, ivf_nprobe=16).search(shuffled[probes], shuffled, 5)
    np.testing.assert_array_equal(got[:, 0], probes)
    np.testing.assert_array_equal(exact[:, 0], probes)


def test_rescoring_ranks_by_the_float_or_int8_documents_and_puts_empty_slots_last():
    queries, docs = clustered(n_docs=300, n_queries=20, dim=16, seed=3)
    ids = np.tile(np.arange(12), (20, 1))
    ids[:, 5] = -1  # an empty slot an approximate index may leave
    ranked = rescore_candidates(queries, docs, ids)
    assert (ranked[:, -1] == -1).all()
    scores = queries @ docs[:12].T  # hand reference: sort the 11 real candidates by q . x
    expected = np.argsort(-np.delete(scores, 5, axis=1), axis=1, kind="stable")
    expected = np.where(expected >= 5, expected + 1, expected)
    np.testing.assert_array_equal(ranked[:, :11], expected)
    ranges = calibration_ranges(np.concatenate([queries, docs]))
    int8 = ann("binary_hnsw", rescore_docs="int8").rescored(queries, docs, ids, 11, ranges)
    np.testing.assert_array_equal(
        int8, rescore_candidates(queries, precision_view(docs, "int8", ranges), ids)[:, :11]
    )


class Planted:
    """encode(texts, prompt): 'q:i' is 'd:i' plus noise, so the exact top 1 is always the relevant document."""

    def __init__(self, dim=48):
        self.dim = dim
        rng = np.random.default_rng(4)
        self.docs = unit(rng.standard_normal((400, dim)))
        self.noise = 0.05 * rng.standard_normal((400, dim))

    def __call__(self, texts, prompt=None, dim=None, precision="float32"):
        rows = [int(t.split(":")[1]) for t in texts]
        out = self.docs[rows] + (self.noise[rows] if prompt == "query" else 0)
        return unit(out)


@pytest.mark.parametrize("index", ["hnsw", "binary_hnsw", "binary_ivf"])
def test_with_rescoring_an_easy_case_scores_as_the_flat_index(index):
    queries = [f"q:{i}" for i in range(0, 400, 3)]
    corpus = [f"d:{i}" for i in range(400)]
    qrels = {n: {int(q.split(":")[1]): 1} for n, q in enumerate(queries)}
    records = evaluate_ann(Planted(), queries, corpus, qrels, [16, None], ann(index, ivf_nprobe=16), k=10)
    assert [(r["metric"], r["dim"]) for r in records] == [("ann_ndcg@10", 16), ("ann_ndcg@10", 48)]
    full = records[1]
    assert full["precision"] == ("float32" if index == "hnsw" else "binary")
    assert full["value"] == full["ann"]["flat_value"] == 1.0 and full["ann"]["delta"] == 0.0
    assert full["ann"]["index"] == index and full["ann"]["recall_vs_flat"] > 0.9
    assert full["ann"]["candidates"] == (10 if index == "hnsw" else 40)


def test_bad_settings_name_their_key():
    with pytest.raises(
        ValueError, match="eval.retrieval.index='ivf': one of flat, hnsw, binary_hnsw, binary_ivf"
    ):
        ann("ivf")
    with pytest.raises(ValueError, match="eval.retrieval.rescore_docs='binary'"):
        ann("binary_hnsw", rescore_docs="binary")
    with pytest.raises(ValueError, match="eval.retrieval.rescore_multiplier=0: a positive integer"):
        ann("binary_hnsw", rescore_multiplier=0)
    assert ann("flat") is None


# ---------------------------------------------------------------------------- in the suite
def retrieval_task(**over) -> EvalTask:
    cfg = OmegaConf.to_container(compose(["model=x"], "eval").eval, resolve=True)
    cfg["retrieval"].update(over)
    settings = task_entries(cfg, ["retrieval"])[0][1]
    queries = [f"q:{i}" for i in range(0, 400, 3)]
    inputs = {
        "queries": queries,
        "corpus": [f"d:{i}" for i in range(400)],
        "qrels": {n: {int(q.split(":")[1]): 1} for n, q in enumerate(queries)},
    }
    return EvalTask("retrieval", "planted", None, "test", "retrieval/planted", inputs, settings)


def test_the_default_suite_is_flat_and_keeps_its_cache_keys():
    """``index: flat``: no approximate records, and the task key is the one hashed before the
    approximate-search keys existed (stored results stay reusable)."""
    task = retrieval_task()
    assert task.settings["index"] == "flat" and AnnIndex.from_settings(task.settings) is None
    old = {k: v for k, v in task.settings.items() if k not in ANN_KEYS}
    head = [SUITE_VERSION, task.name, task.type, task.dataset, task.language, task.split, old]
    h = hashlib.sha256(json.dumps(head, sort_keys=True, default=str).encode())
    h.update(json.dumps(task.inputs, sort_keys=True, default=str).encode())
    assert task.key == h.hexdigest()
    records = task.run(Planted(), [16], ["float32", "binary"])
    assert not [r for r in records if r["metric"].startswith("ann_")]
    assert retrieval_task(index="binary_hnsw").key != task.key
    assert retrieval_task(index="binary_hnsw", hnsw_m=8).key != retrieval_task(index="binary_hnsw").key
    assert retrieval_task(hnsw_m=8).key == task.key  # flat: the approximate settings change nothing


def test_the_suite_stores_the_approximate_records_and_reuses_them(tmp_path):
    """``ann_ndcg@10`` beside the exact metrics in the store, its reference equal to the exact float32
    nDCG@10 of the same run (hnsw), and reused with its fields from the cache."""
    store = ResultsStore(tmp_path / "results.jsonl")
    task = retrieval_task(index="hnsw")
    cfg = OmegaConf.to_container(compose(["model=x"], "eval").eval, resolve=True)
    cfg.update(dims=[16], precisions=["float32", "binary"])
    run = {"run_id": "r1", "experiment": "planted", "seed": None, "model": "planted"}
    model = Planted()
    first = run_suite(model, cfg, store=store, run=run, fingerprint="fp", tasks=([task], []))
    (hnsw,) = [r for r in first if r["metric"] == "ann_ndcg@10" and r["dim"] == 48]
    (exact,) = [r for r in first if (r["metric"], r["dim"], r["precision"]) == ("ndcg@10", 48, "float32")]
    assert hnsw["ann"]["flat_value"] == pytest.approx(exact["value"])
    stored = store.read()
    assert set(stored["metric"]) >= {"ndcg@10", "ann_ndcg@10"}
    assert stored[stored["metric"] == "ann_ndcg@10"]["ann"].iloc[0]["index"] == "hnsw"
    second = run_suite(
        model, cfg, store=store, run={**run, "run_id": "r2"}, fingerprint="fp", tasks=([task], [])
    )
    (again,) = [r for r in second if r["metric"] == "ann_ndcg@10" and r["dim"] == 48]
    assert again["cached_from"] == "r1" and again["ann"] == hnsw["ann"]
    assert REGISTRY["retrieval"].keyed(task.settings) == task.settings
