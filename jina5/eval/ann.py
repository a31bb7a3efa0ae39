"""Approximate search for the retrieval evaluation: what a served index returns, against the exact one.

``eval.retrieval.index`` (conf/eval/default.yaml; ``flat``, the default, adds nothing):

- ``hnsw``: faiss ``IndexHNSWFlat(d, hnsw_m, METRIC_INNER_PRODUCT)`` on the float vectors, efSearch
  ``hnsw_ef_search``; reference: the exact ``IndexFlatIP`` top k.
- ``binary_hnsw``: faiss ``IndexBinaryHNSW(bits, hnsw_m)`` on the sign bits (``quantize(x, "ubinary")``).
- ``binary_ivf``: faiss ``IndexBinaryIVF`` over an ``IndexBinaryFlat`` coarse quantizer with ``ivf_nlist``
  lists (at most one per document) trained on the corpus bits, ``ivf_nprobe`` lists visited.

A binary index fetches c = k * ``rescore_multiplier`` candidates by Hamming distance and re-ranks them by
q . x_hat: the float query against the float document vector (``rescore_docs: float32``) or its int8
dequantization (``int8``, one code book from queries and corpus), as sentence-transformers'
``semantic_search_faiss`` does (which keeps no float documents and scores against the bits); the first
k are kept. Its reference is the exact Hamming top c (``IndexBinaryFlat``) re-ranked the same way, so
the difference is the index's approximation alone. Slots an index leaves empty (id -1) rank last and are
dropped from the ranking.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from jina5.eval.metrics import (
    Encode,
    encode_full,
    ndcg_per_query,
    precision_view,
    record,
    resolve_dims,
    truncate,
)
from jina5.eval.retrieval import check_qrels, rescore_candidates
from jina5.model.quantize import calibration_ranges, quantize

log = logging.getLogger(__name__)

ANN_INDEXES = ("hnsw", "binary_hnsw", "binary_ivf")
INDEXES = ("flat", *ANN_INDEXES)
RESCORE_DOCS = ("float32", "int8")
ANN_KEYS = (
    "index",
    "rescore_multiplier",
    "rescore_docs",
    "hnsw_m",
    "hnsw_ef_search",
    "ivf_nlist",
    "ivf_nprobe",
)


@dataclass(frozen=True)
class AnnIndex:
    """An approximate index of ``eval.retrieval`` (module docstring); ``from_settings`` validates."""

    index: str
    rescore_multiplier: int
    rescore_docs: str
    hnsw_m: int
    hnsw_ef_search: int
    ivf_nlist: int
    ivf_nprobe: int

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> AnnIndex | None:
        """The index the retrieval settings name; None for ``index: flat`` (exact search only)."""
        index = settings["index"]
        if index not in INDEXES:
            raise ValueError(f"eval.retrieval.index={index!r}: one of {', '.join(INDEXES)}")
        if index == "flat":
            return None
        for key in ("rescore_multiplier", "hnsw_m", "hnsw_ef_search", "ivf_nlist", "ivf_nprobe"):
            if not isinstance(settings[key], int) or settings[key] < 1:
                raise ValueError(f"eval.retrieval.{key}={settings[key]!r}: a positive integer")
        if settings["rescore_docs"] not in RESCORE_DOCS:
            raise ValueError(
                f"eval.retrieval.rescore_docs={settings['rescore_docs']!r}: one of {', '.join(RESCORE_DOCS)}"
            )
        return cls(**{key: settings[key] for key in ANN_KEYS})

    @property
    def precision(self) -> str:
        """The vectors the index holds: ``float32`` (hnsw) or ``binary`` (sign bits)."""
        return "float32" if self.index == "hnsw" else "binary"

    def build(self, corpus: np.ndarray) -> faiss.Index | faiss.IndexBinary:
        """The index over the (N, d) unit-norm float ``corpus``, built and filled."""
        if self.index == "hnsw":
            index = faiss.IndexHNSWFlat(corpus.shape[1], self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = self.hnsw_ef_search
            index.add(np.ascontiguousarray(corpus, dtype=np.float32))
            return index
        codes = quantize(corpus, "ubinary")
        bits = codes.shape[1] * 8
        if self.index == "binary_hnsw":
            index = faiss.IndexBinaryHNSW(bits, self.hnsw_m)
            index.hnsw.efSearch = self.hnsw_ef_search
        else:
            nlist = min(self.ivf_nlist, len(corpus))
            index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, nlist)
            index.train(codes)
            index.nprobe = min(self.ivf_nprobe, nlist)
        index.add(codes)
        return index

    def candidates(self, k: int, n_docs: int) -> int:
        """How many ids the index is asked for: k, or k * rescore_multiplier for a binary index."""
        return min(n_docs, k if self.index == "hnsw" else k * self.rescore_multiplier)

    def rescored(
        self, queries: np.ndarray, corpus: np.ndarray, ids: np.ndarray, k: int, ranges: np.ndarray | None
    ) -> np.ndarray:
        """The first k of ``ids`` (Nq, c) re-ranked by q . x_hat (binary indexes; hnsw: as they are)."""
        if self.index == "hnsw":
            return ids[:, :k]
        docs = precision_view(corpus, "int8", ranges) if self.rescore_docs == "int8" else corpus
        return rescore_candidates(queries, docs, ids)[:, :k]

    def search(
        self, queries: np.ndarray, corpus: np.ndarray, k: int, ranges: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """(ANN top-k ids, exact reference top-k ids, both (Nq, k) with -1 for empty slots, and
        {build_seconds, search_seconds, flat_search_seconds}); search times include the re-ranking.
        ``ranges``: the int8 code book of ``rescore_docs: int8`` (default: queries and corpus)."""
        if self.rescore_docs == "int8" and ranges is None:
            ranges = calibration_ranges(np.concatenate([queries, corpus]))
        c = self.candidates(k, len(corpus))
        start = time.perf_counter()
        index = self.build(corpus)
        built = time.perf_counter()
        probe = queries if self.index == "hnsw" else quantize(queries, "ubinary")
        ann = self.rescored(queries, corpus, index.search(np.ascontiguousarray(probe), c)[1], k, ranges)
        searched = time.perf_counter()
        if self.index == "hnsw":
            exact = faiss.IndexFlatIP(corpus.shape[1])
            exact.add(np.ascontiguousarray(corpus, dtype=np.float32))
        else:
            exact = faiss.IndexBinaryFlat(index.d)
            exact.add(quantize(corpus, "ubinary"))
        flat_start = time.perf_counter()
        flat = self.rescored(queries, corpus, exact.search(np.ascontiguousarray(probe), c)[1], k, ranges)
        seconds = {
            "build_seconds": built - start,
            "search_seconds": searched - built,
            "flat_search_seconds": time.perf_counter() - flat_start,
        }
        return ann, flat, seconds


def overlap(ann: np.ndarray, flat: np.ndarray) -> float:
    """Mean over queries of |ANN top k & exact top k| / |exact top k| (the recall of the exact top k)."""
    found = [
        len(set(a[a >= 0].tolist()) & set(f[f >= 0].tolist())) / max(1, int((f >= 0).sum()))
        for a, f in zip(ann, flat, strict=True)
    ]
    return float(np.mean(found))


def evaluate_ann(
    encode: Encode,
    queries: Sequence[str],
    corpus: Sequence[str],
    qrels: dict[int, dict[int, int]],
    dims: Sequence[int | None] | None,
    ann: AnnIndex,
    k: int = 10,
) -> list[dict]:
    """One ``ann_ndcg@k`` record per dim: the ANN ranking's nDCG@k (value) and, in its ``ann`` field,
    the index, the exact reference's nDCG@k (``flat_value``), ``delta`` = value - flat_value,
    ``recall_vs_flat`` (:func:`overlap`), ``candidates``, and the build / search / exact search seconds.
    The queries and vectors are :func:`jina5.eval.retrieval.evaluate_retrieval`'s (memoised encodes)."""
    qids = check_qrels(qrels, len(queries), len(corpus))
    eq = encode_full(encode, [queries[i] for i in qids], prompt="query")
    ed = encode_full(encode, corpus, prompt="document")

    def ndcg(ids: np.ndarray) -> float:
        ranked = {q: [d for d in row.tolist() if d >= 0] for q, row in zip(qids, ids, strict=True)}
        return float(np.mean(ndcg_per_query(ranked, qrels, k)))

    records = []
    for dim in resolve_dims(dims, eq.shape[1]):
        tq, td = truncate(eq, dim), truncate(ed, dim)
        ids, flat_ids, seconds = ann.search(tq, td, min(k, len(corpus)))
        value, flat = ndcg(ids), ndcg(flat_ids)
        info = {
            "index": ann.index,
            "flat_value": flat,
            "delta": value - flat,
            "recall_vs_flat": overlap(ids, flat_ids),
            "candidates": ann.candidates(min(k, len(corpus)), len(corpus)),
            **seconds,
        }
        log.info(
            "%s dim %d: nDCG@%d %.4f vs exact %.4f (%+.4f), search %.2f ms vs %.2f ms",
            ann.index,
            dim,
            k,
            value,
            flat,
            value - flat,
            1e3 * seconds["search_seconds"],
            1e3 * seconds["flat_search_seconds"],
        )
        records.append({**record("retrieval", f"ann_ndcg@{k}", dim, ann.precision, value), "ann": info})
    return records
