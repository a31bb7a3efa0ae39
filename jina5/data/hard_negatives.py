"""Hard-negative mining for the retrieval adapter: faiss search with the stage-1 model over the corpus.

For query i with positive document p_i, the corpus documents are ranked by s(q_i, d) = q_i . d
(unit vectors, faiss ``IndexFlatIP``), every document with the positive's text removed (the corpus is
deduplicated on normalised text, so that is p_i itself), and rank r counted from 0 over what is left.
A candidate c is a usable negative when neither filter drops it:

- false negative: s(q_i, c) > s(q_i, p_i) - margin     (scores nearly as high as the positive)
- near-duplicate: d_c . d_{p_i} > max_positive_similarity   (a paraphrase / copy of the positive)

``num_negatives`` are drawn (seeded, per row) from the usable candidates with rank in
[rank_lo, rank_hi) (e.g. 10..50: hard, but past the top, where unlabeled positives crowd). A row with
too few there is topped up from the usable candidates at ranks >= rank_hi (best first), then from
ranks < rank_lo (closest to rank_lo first); a row of a corpus too small for that keeps fewer (counted).
Nothing here ever returns the positive or a candidate a filter dropped.

Shapes: query_emb (N, D), doc_emb (M, D) float32 unit rows; positive (N,) int indices into doc_emb.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class MiningConfig:
    """The mining settings (the paper states neither the count nor the rule; see conf/data/adapter_retrieval.yaml)."""

    num_negatives: int = 3
    rank_range: tuple[int, int] = (10, 50)
    margin: float = 0.05
    max_positive_similarity: float = 0.95
    seed: int = 0
    # candidates retrieved per query; None = 2 x rank_hi (enough for the top-up)
    search_depth: int | None = None
    batch_size: int = 64  # encode batch size

    def __post_init__(self) -> None:
        lo, hi = (int(x) for x in self.rank_range)
        if not 0 <= lo < hi:
            raise ValueError(
                f"hard_negatives.rank_range must be [lo, hi) with 0 <= lo < hi, got {list(self.rank_range)}"
            )
        if self.num_negatives < 1:
            raise ValueError(f"hard_negatives.num_negatives must be >= 1, got {self.num_negatives}")
        self.rank_range = (lo, hi)


@dataclass
class MiningStats:
    rows: int = 0
    short_rows: int = 0  # rows that got fewer than num_negatives
    dropped_margin: int = 0  # candidates in the searched depth dropped as likely false negatives
    dropped_near_duplicate: int = 0
    from_window: int = 0
    from_top_up: int = 0
    per_row: list[int] = field(default_factory=list)


def mine_hard_negatives(
    query_emb: np.ndarray,
    doc_emb: np.ndarray,
    positive: Sequence[int],
    cfg: MiningConfig,
) -> tuple[list[list[int]], MiningStats]:
    """Per query, ``cfg.num_negatives`` document indices (never the positive); see the module docstring."""
    import faiss

    q = np.ascontiguousarray(query_emb, dtype=np.float32)
    d = np.ascontiguousarray(doc_emb, dtype=np.float32)
    positive = np.asarray(positive, dtype=np.int64)
    n, m = q.shape[0], d.shape[0]
    if positive.shape != (n,) or (n and (positive.min() < 0 or positive.max() >= m)):
        raise ValueError(f"positive must be ({n},) indices into {m} documents")
    lo, hi = cfg.rank_range
    depth = min(m, (cfg.search_depth or 2 * hi) + 1)  # +1: the positive itself is in the ranking
    index = faiss.IndexFlatIP(d.shape[1])
    index.add(d)
    scores, ids = index.search(q, depth)  # (N, depth) best first
    pos_score = np.einsum("nd,nd->n", q, d[positive])  # (N,)
    stats = MiningStats(rows=n)
    out: list[list[int]] = []
    for i in range(n):
        keep = (ids[i] >= 0) & (ids[i] != positive[i])
        cand, cand_score = ids[i][keep], scores[i][keep]  # ranks 0.. after removing the positive
        false_neg = cand_score > pos_score[i] - cfg.margin
        near_dup = (d[cand] @ d[positive[i]]) > cfg.max_positive_similarity
        stats.dropped_margin += int(false_neg.sum())
        stats.dropped_near_duplicate += int((near_dup & ~false_neg).sum())
        usable = ~(false_neg | near_dup)
        ranks = np.arange(len(cand))
        window = cand[usable & (ranks >= lo) & (ranks < hi)]
        rng = np.random.default_rng([cfg.seed, i])
        chosen = (
            list(rng.choice(window, size=min(cfg.num_negatives, len(window)), replace=False))
            if len(window)
            else []
        )
        stats.from_window += len(chosen)
        if len(chosen) < cfg.num_negatives:
            deeper = list(cand[usable & (ranks >= hi)])
            harder = list(cand[usable & (ranks < lo)][::-1])
            extra = (deeper + harder)[: cfg.num_negatives - len(chosen)]
            stats.from_top_up += len(extra)
            chosen += extra
        if len(chosen) < cfg.num_negatives:
            stats.short_rows += 1
        stats.per_row.append(len(chosen))
        out.append([int(c) for c in chosen])
    return out, stats
