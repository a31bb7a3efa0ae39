"""Retrieval evaluation with faiss: nDCG@10 (main), MRR@k, Recall@k per (dim, precision).

Queries are encoded with ``prompt="query"``, the corpus with ``prompt="document"``, once each at
full dim in float32; every (dim, precision) setting is derived from those vectors (see
:mod:`jina5.eval.metrics`), which equals calling ``encode(..., dim=dim, precision=precision)``
with the int8 calibration ranges taken from queries and corpus together.

Search per precision (q: (Nq, d) queries, D: (Nd, d) corpus, both unit-norm after truncation):

- float32: exact inner product, faiss ``IndexFlatIP``; score(q, x) = q . x (= cosine).
- int8: both sides quantized with one set of per-dim ranges, dequantized back to floats
  (x_hat = lo + (code + 128) / 255 * (hi - lo)), then exact inner product q_hat . x_hat with
  ``IndexFlatIP`` (the raw codes are not used as floats: the per-dim offset ``lo`` would change
  the ranking).
- binary / ubinary (same result): sign bits packed with ``quantize(x, "ubinary")``, exact Hamming
  search with faiss ``IndexBinaryFlat`` (dims are zero-padded to a multiple of 8 on both sides,
  which adds no distance); equal distances are ordered by corpus index.

Rescoring (``rescore=r``, quantized precisions only): fetch max(r, k) candidates with the
quantized index, re-rank the first r of them by the float score q . x of the (truncated) float
query and float corpus vectors, keep the rest in index order. With r >= corpus size this
reproduces the float32 ranking. sentence-transformers' ``semantic_search_faiss`` rescoring uses
the float query against the *quantized* corpus (it does not keep float documents); ours assumes
the float corpus vectors are kept on disk for the r candidates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import faiss
import numpy as np

from jina5.eval.items import retrieval_items
from jina5.eval.metrics import (
    Encode,
    check_precisions,
    encode_full,
    mrr_at_k,
    ndcg_per_query,
    precision_view,
    recall_at_k,
    record,
    resolve_dims,
    scored_qids,
    truncate,
)
from jina5.model.quantize import calibration_ranges, quantize

log = logging.getLogger(__name__)
_RESCORE_BLOCK = 1 << 24  # floats per rescoring block (queries x candidates x dim)


def ip_search(queries: np.ndarray, corpus: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact max-inner-product top-k: (Nq, k) scores (descending) and (Nq, k) corpus indices."""
    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(np.ascontiguousarray(corpus, dtype=np.float32))
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return scores, ids


def hamming_search(
    query_codes: np.ndarray, corpus_codes: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Hamming top-k over packed uint8 codes (N, B): (Nq, k) distances (ascending) and indices.

    Within the returned k, equal distances are ordered by corpus index.
    """
    index = faiss.IndexBinaryFlat(corpus_codes.shape[1] * 8)
    index.add(np.ascontiguousarray(corpus_codes, dtype=np.uint8))
    dist, ids = index.search(np.ascontiguousarray(query_codes, dtype=np.uint8), k)
    order = np.lexsort((ids, dist), axis=-1)
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(ids, order, axis=1)


def rescore_candidates(queries: np.ndarray, corpus: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Re-rank each row of candidate ``ids`` (Nq, r) by the float score queries[i] . corpus[ids[i, j]];
    the empty slots an approximate index leaves (id -1) go last."""
    out = np.empty_like(ids)
    step = max(1, _RESCORE_BLOCK // max(1, ids.shape[1] * corpus.shape[1]))
    for start in range(0, len(ids), step):
        block = ids[start : start + step]
        scores = np.einsum("qd,qcd->qc", queries[start : start + step], corpus[block])
        scores[block < 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")
        out[start : start + step] = np.take_along_axis(block, order, axis=1)
    return out


def search(
    queries: np.ndarray,
    corpus: np.ndarray,
    precision: str,
    k: int,
    rescore: int | None = None,
    ranges: np.ndarray | None = None,
) -> np.ndarray:
    """Top-k corpus indices (Nq, min(k, Nd)) for float (truncated, unit-norm) ``queries``/``corpus``.

    ``precision`` picks the index (see the module docstring); ``ranges`` are the int8
    calibration ranges (default: from queries and corpus together); ``rescore`` re-ranks that
    many quantized candidates with the float vectors.
    """
    check_precisions([precision])
    k = min(k, len(corpus))
    if precision == "float32":
        return ip_search(queries, corpus, k)[1]
    n_cand = min(len(corpus), max(k, rescore or 0))
    if precision == "int8":
        if ranges is None:
            ranges = calibration_ranges(np.concatenate([queries, corpus]))
        q_hat, d_hat = precision_view(queries, "int8", ranges), precision_view(corpus, "int8", ranges)
        ids = ip_search(q_hat, d_hat, n_cand)[1]
    else:
        ids = hamming_search(quantize(queries, "ubinary"), quantize(corpus, "ubinary"), n_cand)[1]
    if rescore:
        r = min(rescore, n_cand)
        ids[:, :r] = rescore_candidates(queries, corpus, ids[:, :r])
    return ids[:, :k]


def check_qrels(qrels: dict[int, dict[int, int]], n_queries: int, n_docs: int) -> list[int]:
    """Validate qrels indices; return the query indices with at least one relevant document."""
    for q, rels in qrels.items():
        if not 0 <= q < n_queries:
            raise ValueError(f"qrels query index {q} outside [0, {n_queries})")
        bad = [d for d in rels if not 0 <= d < n_docs]
        if bad:
            raise ValueError(f"qrels for query {q} name corpus indices {bad[:5]} outside [0, {n_docs})")
    qids = sorted(q for q, rels in qrels.items() if any(r > 0 for r in rels.values()))
    if len(qids) < n_queries:
        log.info(
            "retrieval: %d of %d queries have no relevant document and are not scored",
            n_queries - len(qids),
            n_queries,
        )
    if not qids:
        raise ValueError("no query in qrels has a relevant document (rel > 0)")
    return qids


def evaluate_retrieval(
    encode: Encode,
    queries: Sequence[str],
    corpus: Sequence[str],
    qrels: dict[int, dict[int, int]],
    dims: Sequence[int | None] | None,
    precisions: Sequence[str],
    *,
    k_values: Sequence[int],
    rescore: int | None,
) -> list[dict]:
    """Score retrieval for every (dim, precision); returns metric records.

    ``qrels`` maps a query index (into ``queries``) to {corpus index: grade}. Only queries with a
    relevant document are encoded and scored. For every k in ``k_values`` the records hold
    ``ndcg@k`` (nDCG@10 is the main score), ``mrr@k`` and ``recall@k``; search depth is capped at
    the corpus size (a ranking of the whole corpus). ``dims`` None means the full dim only. Each
    ``ndcg@k`` record carries ``items``: the per-query nDCG@k of the scored queries
    (:func:`jina5.eval.items.retrieval_items`), whose mean is its value.
    """
    precisions = check_precisions(precisions)
    if not k_values or min(k_values) < 1:
        raise ValueError(f"k_values must be positive, got {k_values}")
    qids = check_qrels(qrels, len(queries), len(corpus))
    scored = [queries[q] for q in scored_qids(qrels)]  # the per-query items' order
    eq = encode_full(encode, [queries[i] for i in qids], prompt="query")
    ed = encode_full(encode, corpus, prompt="document")
    if eq.shape[1] != ed.shape[1]:
        raise ValueError(f"query dim {eq.shape[1]} != document dim {ed.shape[1]}")
    depth = max(k_values)
    records = []
    for dim in resolve_dims(dims, eq.shape[1]):
        tq, td = truncate(eq, dim), truncate(ed, dim)
        ranges = calibration_ranges(np.concatenate([tq, td])) if "int8" in precisions else None
        for precision in precisions:
            ids = search(tq, td, precision, depth, rescore=rescore, ranges=ranges)
            ranked = {q: row.tolist() for q, row in zip(qids, ids, strict=True)}
            for k in k_values:
                per_query = ndcg_per_query(ranked, qrels, k)
                ndcg = record("retrieval", f"ndcg@{k}", dim, precision, np.mean(per_query))
                records += [
                    {**ndcg, "items": retrieval_items(per_query, scored, corpus)},
                    record("retrieval", f"mrr@{k}", dim, precision, mrr_at_k(ranked, qrels, k)),
                    record("retrieval", f"recall@{k}", dim, precision, recall_at_k(ranked, qrels, k)),
                ]
    return records
