"""Per-item scores: what a task keeps so that its main metric can be recomputed on a resample of its items.

Each evaluator attaches an :class:`ItemScores` to its main-metric record of every (dim, precision)
(key ``items``); the suite writes them to the results store's sidecar (:mod:`jina5.eval.store`) and
:mod:`jina5.eval.bootstrap` resamples them. Per task type, over the N test items in a fixed order:

==============  =========================================  ==============================================
type            arrays                                     main metric on a resample with counts w (N,)
==============  =========================================  ==============================================
retrieval       ``ndcg`` (N,) per-query nDCG@10            sum_i w_i ndcg_i / sum_i w_i
sts             ``predicted`` (N,) pair cosine,            Spearman of (predicted, gold) over the sample:
                ``gold`` (N,) human score                  the w-weighted Pearson of their average ranks
classification  ``correct`` (S, N) bool, one row per       mean_s sum_i w_i correct_si / sum_i w_i
                probe seed                                 (= mean over seeds of the accuracy)
clustering      ``assigned`` (S, N) cluster per k-means    mean_s V-measure(gold, assigned_s) over the
                seed, ``gold`` (N,) label index            sample (counts from the w-weighted contingency)
==============  =========================================  ==============================================

A resample is given by its counts ``w`` (how often each item was drawn; ``w = 1`` is the full sample),
so a resample of the items equals the metric of the duplicated items: for STS a drawn-twice pair is a
tie with itself (average ranks, as ``scipy.stats.spearmanr``), for clustering its (label, cluster) cell
counts twice (as ``sklearn.metrics.v_measure_score``). Clustering keeps each document's k-means cluster
fixed: the resample asks how the same clustering scores on another draw of documents, it does not
re-run k-means. Every function takes counts of shape (B, N) and returns (B,).

``identity`` names the items and their order (:func:`item_identity`): two models' items can be paired
only if their identities are equal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The arrays of each task type (module docstring).
ARRAYS: dict[str, tuple[str, ...]] = {
    "retrieval": ("ndcg",),
    "sts": ("predicted", "gold"),
    "classification": ("correct",),
    "clustering": ("assigned", "gold"),
}


def item_identity(items: Sequence) -> str:
    """sha256 (hex) of the items in order, as JSON (texts, labels, scores): equal iff the same items."""
    return hashlib.sha256(json.dumps(list(items), default=str).encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class ItemScores:
    """One task's per-item data at one (dim, precision): ``task`` (its type), ``identity`` of the items
    and the type's ``arrays`` (module docstring), whose last axis is the N items."""

    task: str
    identity: str
    arrays: dict[str, np.ndarray] = field(repr=False)

    def __post_init__(self) -> None:
        want = ARRAYS.get(self.task)
        if want is None:
            raise ValueError(f"no per-item scores for task type {self.task!r}; known: {sorted(ARRAYS)}")
        if set(self.arrays) != set(want):
            raise ValueError(f"{self.task} items need arrays {want}, got {sorted(self.arrays)}")
        sizes = {a.shape[-1] for a in self.arrays.values()}
        if len(sizes) != 1:
            raise ValueError(f"{self.task} item arrays disagree on the item count: {sizes}")

    @property
    def n_items(self) -> int:
        return int(next(iter(self.arrays.values())).shape[-1])

    def metric(self) -> float:
        """The main metric on the full sample (every item once)."""
        return float(self.resampled(np.ones((1, self.n_items)))[0])

    def resampled(self, counts: np.ndarray) -> np.ndarray:
        """(B,) main metric of each resample given by ``counts`` (B, N), how often each item was drawn."""
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 2 or counts.shape[1] != self.n_items:
            raise ValueError(f"counts must be (B, {self.n_items}), got {counts.shape}")
        return RESAMPLED[self.task](self.arrays, counts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ItemScores):
            return NotImplemented
        return (
            (self.task, self.identity) == (other.task, other.identity)
            and set(self.arrays) == set(other.arrays)
            and all(np.array_equal(a, other.arrays[k]) for k, a in self.arrays.items())
        )

    __hash__ = None  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------------- constructors
def retrieval_items(ndcg: Sequence[float], queries: Sequence[str], corpus: Sequence[str]) -> ItemScores:
    """Per-query nDCG (N,) of the scored ``queries`` (their texts, in the same order) over ``corpus``
    (part of the identity: the same queries against another corpus are other items)."""
    identity = item_identity([list(queries), list(corpus)])
    return ItemScores("retrieval", identity, {"ndcg": np.asarray(ndcg, dtype=np.float64)})


def sts_items(
    predicted: np.ndarray, gold: Sequence[float], texts_a: Sequence[str], texts_b: Sequence[str]
) -> ItemScores:
    """Pair cosines (N,) (kept in their own float dtype) and gold scores (N,) of the pairs (a_i, b_i)."""
    gold = np.asarray(gold, dtype=np.float64)
    identity = item_identity(list(zip(texts_a, texts_b, gold.tolist(), strict=True)))
    return ItemScores("sts", identity, {"predicted": np.asarray(predicted), "gold": gold})


def classification_items(correct: np.ndarray, texts: Sequence[str], labels: Sequence) -> ItemScores:
    """(S, N) bool: test item i predicted right by the probe of seed s."""
    identity = item_identity(list(zip(texts, map(str, labels), strict=True)))
    return ItemScores("classification", identity, {"correct": np.asarray(correct, dtype=bool)})


def clustering_items(assigned: np.ndarray, texts: Sequence[str], labels: Sequence) -> ItemScores:
    """(S, N) k-means cluster of document i under seed s, and the gold labels (stored as indices into
    their sorted distinct values)."""
    names = [str(lab) for lab in labels]
    gold = np.unique(np.asarray(names, dtype=object), return_inverse=True)[1].astype(np.int32)
    identity = item_identity(list(zip(texts, names, strict=True)))
    return ItemScores(
        "clustering", identity, {"assigned": np.asarray(assigned, dtype=np.int32), "gold": gold}
    )


# ---------------------------------------------------------------------------------------------- resampled metrics
def _weighted_mean(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B,) sum_i w_i v_i / sum_i w_i for values (N,)."""
    return counts @ values / counts.sum(axis=1)


def _retrieval(arrays: Mapping[str, np.ndarray], counts: np.ndarray) -> np.ndarray:
    return _weighted_mean(arrays["ndcg"].astype(np.float64), counts)


def _classification(arrays: Mapping[str, np.ndarray], counts: np.ndarray) -> np.ndarray:
    return _weighted_mean(arrays["correct"].mean(axis=0, dtype=np.float64), counts)


def _group_sums(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts summed over the items of each distinct value: ((B, G) sums in ascending value order,
    (N,) the group of each item)."""
    distinct, group = np.unique(values, return_inverse=True)
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    return np.add.reduceat(counts[:, order], starts, axis=1), group.reshape(-1)


def weighted_average_ranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B, N) average rank (1-based) of each item among the sample in which item i appears w_i times:
    the items of a group of equal values (a drawn-twice item included) share the mean of their ranks,
    C + (W + 1) / 2 with C the count below the group and W the group's count."""
    sums, group = _group_sums(values, counts)
    below = np.cumsum(sums, axis=1) - sums
    return (below + (sums + 1.0) / 2.0)[:, group]


def _weighted_pearson(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B,) Pearson correlation of rows x, y (B, N) with item weights ``counts`` (B, N); NaN if constant."""
    n = counts.sum(axis=1)
    dx = x - (np.einsum("bn,bn->b", counts, x) / n)[:, None]
    dy = y - (np.einsum("bn,bn->b", counts, y) / n)[:, None]
    wdx = counts * dx
    cov = np.einsum("bn,bn->b", wdx, dy)
    var = np.einsum("bn,bn->b", wdx, dx) * np.einsum("bn,bn,bn->b", counts, dy, dy)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, cov / np.sqrt(np.where(var > 0, var, 1.0)), np.nan)


def _sts(arrays: Mapping[str, np.ndarray], counts: np.ndarray) -> np.ndarray:
    rx = weighted_average_ranks(arrays["predicted"], counts)
    ry = weighted_average_ranks(arrays["gold"], counts)
    return _weighted_pearson(rx, ry, counts)


def _entropy(marginals: np.ndarray, n: np.ndarray) -> np.ndarray:
    """(B,) natural-log entropy of count rows (B, K) summing to ``n`` (B, 1)."""
    p = marginals / n
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)


def weighted_v_measure(gold: np.ndarray, assigned: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B,) V-measure = 2 h c / (h + c) of one clustering (N,) against ``gold`` (N,) per count row.

    From the contingency n_lk = sum_{i: gold=l, cluster=k} w_i: H(C), H(K) the entropies of its
    margins, MI = sum n_lk / n log(n n_lk / (n_l n_k)); h = MI / H(C) (1 if H(C) = 0), c = MI / H(K)
    (1 if H(K) = 0), v = 0 if h + c = 0 (as sklearn).
    """
    n_clusters = int(assigned.max()) + 1
    cells = gold.astype(np.int64) * n_clusters + assigned
    cell_counts, _ = _group_sums(cells, counts)
    distinct = np.unique(cells)
    labels = np.unique(distinct // n_clusters, return_inverse=True)[1].reshape(-1)
    clusters = np.unique(distinct % n_clusters, return_inverse=True)[1].reshape(-1)
    by_label = cell_counts @ np.eye(labels.max() + 1)[labels]  # (B, L)
    by_cluster = cell_counts @ np.eye(clusters.max() + 1)[clusters]  # (B, K)
    n = counts.sum(axis=1, keepdims=True)
    h_gold, h_cluster = _entropy(by_label, n), _entropy(by_cluster, n)
    outer = by_label[:, labels] * by_cluster[:, clusters]  # n_l n_k of each cell, > 0 where n_lk > 0
    present = cell_counts > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = n * np.where(present, cell_counts, 1.0) / np.where(present, outer, 1.0)
        terms = np.where(present, cell_counts / n * np.log(ratio), 0.0)
        mi = np.clip(terms.sum(axis=1), 0.0, None)
        h = np.where(h_gold > 0, mi / np.where(h_gold > 0, h_gold, 1.0), 1.0)
        c = np.where(h_cluster > 0, mi / np.where(h_cluster > 0, h_cluster, 1.0), 1.0)
        return np.where(h + c > 0, 2 * h * c / np.where(h + c > 0, h + c, 1.0), 0.0)


def _clustering(arrays: Mapping[str, np.ndarray], counts: np.ndarray) -> np.ndarray:
    gold = arrays["gold"]
    return np.mean([weighted_v_measure(gold, seed_run, counts) for seed_run in arrays["assigned"]], axis=0)


RESAMPLED: dict[str, Callable[[Mapping[str, np.ndarray], np.ndarray], np.ndarray]] = {
    "retrieval": _retrieval,
    "sts": _sts,
    "classification": _classification,
    "clustering": _clustering,
}


# ---------------------------------------------------------------------------------------------- files
def save_items(path: Path, by_setting: Mapping[tuple[int, str], ItemScores]) -> None:
    """One task's items at every (dim, precision) in one compressed ``.npz``: ``task``, ``identity``,
    and ``<dim>_<precision>_<array>`` per setting; written to a temporary name, then renamed."""
    if not by_setting:
        raise ValueError("no items to save")
    first = next(iter(by_setting.values()))
    if any((s.task, s.identity) != (first.task, first.identity) for s in by_setting.values()):
        raise ValueError("the items of one task file must share its task type and identity")
    arrays = {"task": np.asarray(first.task), "identity": np.asarray(first.identity)}
    for (dim, precision), scores in by_setting.items():
        arrays.update({f"{int(dim)}_{precision}_{k}": a for k, a in scores.arrays.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        np.savez_compressed(f, **arrays)
    tmp.replace(path)


def load_items(path: Path) -> dict[tuple[int, str], ItemScores]:
    """{(dim, precision): ItemScores} of a file written by :func:`save_items`."""
    with np.load(path, allow_pickle=False) as f:
        task, identity = str(f["task"]), str(f["identity"])
        grouped: dict[tuple[int, str], dict[str, np.ndarray]] = {}
        for key in f.files:
            if key in ("task", "identity"):
                continue
            dim, precision, name = key.split("_", 2)
            grouped.setdefault((int(dim), precision), {})[name] = f[key]
    return {setting: ItemScores(task, identity, arrays) for setting, arrays in grouped.items()}
