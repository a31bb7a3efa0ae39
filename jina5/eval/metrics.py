"""Ranking metrics, embedding variants (truncation / quantization) and relative drops.

Ranking metrics follow pytrec_eval / MTEB. For a query q with graded qrels ``rel(q, d)`` and a
ranking ``d_1, d_2, ...``:

- nDCG@k  = DCG@k / IDCG@k, DCG@k = sum_{i=1..k} rel(q, d_i) / log2(i + 1) (linear gain, as
  trec_eval), IDCG@k = the same sum over the qrels' grades sorted in descending order.
- MRR@k   = 1 / (rank of the first d_i with rel > 0), 0 if none within the first k.
- Recall@k = |{d_1..d_k} intersect R(q)| / |R(q)|, R(q) = {d : rel(q, d) > 0}.

Each is averaged over the queries of ``qrels`` that have at least one relevant document (queries
with none cannot be scored and are skipped); a query missing from ``ranked`` counts as an empty
ranking (score 0). Negative grades count as 0.

Embedding variants: every evaluator encodes once at full dim in float32 and derives the other
settings itself. ``truncate(emb, dim)`` (slice + re-normalise) equals ``encode(texts, dim=dim)``;
``precision_view(truncate(emb, dim), precision, ranges)`` equals quantizing ``encode(texts,
dim=dim, precision=precision)`` with the same calibration ranges, mapped back to floats so that
similarities can be computed:

- float32: unchanged.
- int8: codes from :func:`jina5.model.quantize.quantize`, dequantized by :func:`dequantize_int8`.
- binary / ubinary: the sign bits from ``quantize(emb, "ubinary")`` as +-1 vectors. For two such
  vectors of dim D, u . v = D - 2 * hamming(u, v), so their cosine is 1 - 2 * hamming / D: any
  ranking or correlation computed from the +-1 vectors equals one computed from negative Hamming.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from jina5.model.quantize import PRECISIONS, calibration_ranges, quantize

Encode = Callable[..., np.ndarray]  # encode(texts, prompt=None, dim=None, precision="float32") -> (N, D)
Qrels = Mapping[Hashable, Mapping[Hashable, int]]
Ranked = Mapping[Hashable, Sequence[Hashable]]

# Fields that identify one score apart from the (dim, precision) setting, for relative drops.
_GROUP_FIELDS = ("task", "dataset", "language", "split", "metric")


# ---------------------------------------------------------------------------- ranking metrics
def scored_qids(qrels: Qrels) -> list[Hashable]:
    """The queries of ``qrels`` with a relevant (rel > 0) document, in ``qrels`` order: the scored ones."""
    return [q for q, rels in qrels.items() if any(r > 0 for r in rels.values())]


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _per_query(
    ranked: Ranked, qrels: Qrels, k: int, score: Callable[[Mapping[Hashable, int], list[Hashable]], float]
) -> list[float]:
    """``score(its qrels, its top-k document ids)`` of each scored query, in :func:`scored_qids` order."""
    _check_k(k)
    return [score(qrels[q], list(ranked.get(q, ()))[:k]) for q in scored_qids(qrels)]


def ndcg_per_query(ranked: Ranked, qrels: Qrels, k: int) -> list[float]:
    """nDCG@k of each scored query (:func:`scored_qids` order): linear gain, log2(i + 1) discount,
    ideal ranking from the qrels."""

    def ndcg(rels: Mapping[Hashable, int], docs: list[Hashable]) -> float:
        # the sum over the relevant documents only: the other terms are +0.0, which leaves a float sum as it is
        dcg = sum(rels[d] / np.log2(i + 2) for i, d in enumerate(docs) if rels.get(d, 0) > 0)
        ideal = sorted((max(r, 0) for r in rels.values()), reverse=True)[:k]
        return dcg / sum(r / np.log2(i + 2) for i, r in enumerate(ideal))

    return _per_query(ranked, qrels, k, ndcg)


def ndcg_at_k(ranked: Ranked, qrels: Qrels, k: int) -> float:
    """Mean nDCG@k over the scored queries (:func:`ndcg_per_query`)."""
    return _mean(ndcg_per_query(ranked, qrels, k))


def mrr_at_k(ranked: Ranked, qrels: Qrels, k: int) -> float:
    """Mean reciprocal rank of the first relevant (rel > 0) document within the top k."""

    def rr(rels: Mapping[Hashable, int], docs: list[Hashable]) -> float:
        return next((1.0 / (i + 1) for i, d in enumerate(docs) if rels.get(d, 0) > 0), 0.0)

    return _mean(_per_query(ranked, qrels, k, rr))


def recall_at_k(ranked: Ranked, qrels: Qrels, k: int) -> float:
    """Mean fraction of a query's relevant (rel > 0) documents found in its top k."""

    def recall(rels: Mapping[Hashable, int], docs: list[Hashable]) -> float:
        relevant = {d for d, r in rels.items() if r > 0}
        return len(set(docs) & relevant) / len(relevant)

    return _mean(_per_query(ranked, qrels, k, recall))


# ---------------------------------------------------------------------------- embedding variants
def encode_full(encode: Encode, texts: Sequence[str], prompt: str | None) -> np.ndarray:
    """``encode(texts, prompt=prompt)`` at full dim in float32, checked to be (len(texts), D)."""
    emb = np.asarray(encode(list(texts), prompt=prompt), dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise ValueError(f"encode returned shape {emb.shape} for {len(texts)} texts; expected (N, D)")
    return emb


def truncate(emb: np.ndarray, dim: int | None) -> np.ndarray:
    """Matryoshka truncation: the first ``dim`` dims of (N, D) ``emb``, re-normalised to unit L2.

    ``dim`` None or equal to D returns ``emb`` unchanged (as float32; the encoder already returns
    unit vectors), so the full-dim setting is bit-identical to the untruncated embeddings.
    All-zero rows stay zero. Equals ``encode(texts, dim=dim)``.
    """
    emb = np.asarray(emb, dtype=np.float32)
    full = emb.shape[-1]
    if dim is None or dim == full:
        return emb
    if not 1 <= dim <= full:
        raise ValueError(f"dim must be in [1, {full}] (the encoder's dim), got {dim}")
    x = emb[:, :dim]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def dequantize_int8(codes: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Inverse of the int8 map in :mod:`jina5.model.quantize`: x = lo + (q + 128) / 255 * (hi - lo).

    ``codes`` (N, D) int8, ``ranges`` (2, D) = (lo, hi). Returns (N, D) float32; the error per
    dim is at most (hi - lo) / 510 inside the calibration range.
    """
    lo, hi = np.asarray(ranges, dtype=np.float32)
    return (lo + (codes.astype(np.float32) + 128.0) / 255.0 * (hi - lo)).astype(np.float32)


def sign_vectors(emb: np.ndarray) -> np.ndarray:
    """(N, D) float32 +-1 vectors from the packed sign bits ``quantize(emb, "ubinary")`` (x > 0 -> +1)."""
    d = emb.shape[-1]
    bits = np.unpackbits(quantize(emb, "ubinary"), axis=-1, count=d)
    return bits.astype(np.float32) * 2.0 - 1.0


def check_precisions(precisions: Iterable[str]) -> list[str]:
    """Validate precision names against :data:`jina5.model.quantize.PRECISIONS`; returns them as a list."""
    precisions = list(precisions)
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise ValueError(f"unknown precision(s) {bad}; choose from {PRECISIONS}")
    return precisions


def precision_view(emb: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """Float (N, D) view of unit-norm ``emb`` after quantization to ``precision``.

    float32 -> ``emb``; int8 -> ``dequantize_int8(quantize(emb, "int8", ranges), ranges)`` with
    ``ranges`` defaulting to ``calibration_ranges(emb)``; binary / ubinary -> :func:`sign_vectors`.
    Evaluators pass ``ranges`` computed from all vectors they encoded for the task (at that dim),
    so queries and documents (or train and test) share one int8 code book.
    """
    check_precisions([precision])
    emb = np.asarray(emb, dtype=np.float32)
    if precision == "float32":
        return emb
    if precision == "int8":
        ranges = calibration_ranges(emb) if ranges is None else ranges
        return dequantize_int8(quantize(emb, "int8", ranges), ranges)
    return sign_vectors(emb)


def resolve_dims(dims: Iterable[int | None] | None, full: int) -> list[int]:
    """``dims`` as ints (None, or a None entry, means the full dim ``full``), validated."""
    out = [full if d is None else int(d) for d in (dims if dims is not None else [None])]
    bad = [d for d in out if not 1 <= d <= full]
    if bad:
        raise ValueError(f"dims {bad} outside [1, {full}] (the encoder's dim)")
    return out


def variants(
    embs: Sequence[np.ndarray], dims: Iterable[int | None] | None, precisions: Iterable[str]
) -> Iterator[tuple[int, str, list[np.ndarray]]]:
    """Yield ``(dim, precision, views)`` for every setting, ``views[i]`` the float view of ``embs[i]``.

    ``embs`` are full-dim float32 encodings of one task (e.g. train and test). Per dim, the int8
    calibration ranges come from all of them together (one code book for the task).
    """
    precisions = check_precisions(precisions)
    for dim in resolve_dims(dims, embs[0].shape[-1]):
        trunc = [truncate(e, dim) for e in embs]
        ranges = calibration_ranges(np.concatenate(trunc)) if "int8" in precisions else None
        for precision in precisions:
            yield dim, precision, [precision_view(t, precision, ranges) for t in trunc]


def record(task: str, metric: str, dim: int, precision: str, value: float) -> dict:
    """One metric record, the unit every evaluator returns and the results store appends."""
    return {"task": task, "metric": metric, "dim": int(dim), "precision": precision, "value": float(value)}


# ---------------------------------------------------------------------------- relative drops
def relative_drops(records: Iterable[Mapping]) -> list[dict]:
    """Copies of ``records`` with ``relative_drop`` = (ref - value) / ref added.

    ``ref`` is the float32 value at the largest dim of the same (task, dataset, language, split,
    metric) group (fields absent from a record count as None). Positive = worse than the
    reference; the reference itself gets 0.0; a group without a float32 record, or with ref = 0,
    gets None.
    """
    out = [dict(r) for r in records]
    refs: dict[tuple, tuple[int, float]] = {}
    for r in out:
        if r["precision"] != "float32":
            continue
        key = tuple(r.get(f) for f in _GROUP_FIELDS)
        if key not in refs or r["dim"] > refs[key][0]:
            refs[key] = (r["dim"], r["value"])
    for r in out:
        ref = refs.get(tuple(r.get(f) for f in _GROUP_FIELDS))
        if ref is None or ref[1] == 0:
            r["relative_drop"] = None
        elif (r["dim"], r["precision"]) == (ref[0], "float32"):
            r["relative_drop"] = 0.0
        else:
            r["relative_drop"] = float((ref[1] - r["value"]) / ref[1])
    return out
