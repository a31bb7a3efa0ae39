"""Paired hierarchical bootstrap confidence intervals of the difference between two rows of a results table.

A row is one model (experiment) with one or more seeds (runs). Each of its tasks keeps per-item
scores (:mod:`jina5.eval.items`), from which its main metric is recomputed on a resample of the
task's test items: queries (retrieval), pairs (STS), test texts (classification), documents
(clustering). A resample b = 1..B draws at two levels, seeds first, then items:

1. **seeds**: S seed indices with replacement from the row's S seeds (sorted by seed), as counts
   v_b (S,) from one random stream seeded by (``seed``, S) (:func:`seed_counts`); rows with the same
   number of seeds get THE SAME seed draws, so seed s of one row stays paired with seed s of the other
   (same data order, same start). A row of one seed (a baseline) has no seed level: v_b = (1,);
2. **items**: for task t with N_t items, N_t item indices with replacement; the counts w_b (N_t,) come
   from one random stream per task, seeded by (``seed``, the task's name) (:func:`resample_counts`):
   row b of the stream is resample b for every model and every seed, so both rows of a comparison see
   the same item resamples (and the first B resamples do not depend on B);
3. per seed s of a row, the task's metric m_s,b on the items w_b; the row's value is the seed-weighted
   mean sum_s v_b,s m_s,b / S;
4. aggregate exactly as :mod:`jina5.eval.summary` (the same functions): tasks of a data set (chatterbot's
   languages) -> data-set mean -> task-type mean -> ``overall`` = mean of the type means;
5. the difference candidate - reference of each level.

The interval is the percentile interval of the B differences: the 2.5th and 97.5th percentiles
(numpy's linear interpolation) for 95%. It measures how the difference depends on the draw of test
items AND of training seeds: a gap that one lucky seed makes is a ``tie``. Column 0 of every replicate
array is the full sample (each seed and item once), whose difference is the point estimate ``delta``;
it equals the difference of the rows' stored averages up to float rounding. A difference is called
``better`` / ``worse`` only when its interval excludes 0, else ``tie``.

Both rows must have been scored on the same tasks with the same items (equal
:func:`jina5.eval.items.item_identity`); otherwise, or when a run has no per-item scores (an older
store), :class:`MissingItems` says why and the tables print no interval.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import pandas as pd

from jina5.eval.items import ItemScores
from jina5.eval.store import ResultsStore, isna
from jina5.eval.summary import dataset_means, full_dim, main_metric_rows, overall_mean, type_means

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
CONFIDENCE = 0.95
TASK_FIELDS = ("task", "dataset", "language", "split")
TaskId = tuple  # (task type, dataset, language, split): one task of a run, as its records name it


class MissingItems(Exception):
    """No interval can be computed: the message says why (no per-item scores, items that differ), and
    ``hint`` in a few words, for a table cell (``no CI (<hint>)``)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint or message


def task_name(task: TaskId) -> str:
    """``retrieval/chatterbot/english/test``: the task's name in the seed of its resamples."""
    return "/".join("" if isna(v) else str(v) for v in task)


@lru_cache(maxsize=64)
def resample_counts(n_items: int, resamples: int, seed: int, name: str) -> np.ndarray:
    """(resamples, n_items) float64 counts: row b is how often each item is drawn by resample b
    (n_items draws with replacement; every row sums to n_items). The stream is
    ``numpy.random.default_rng([seed, sha256(name)[:8]])``; read-only (cached)."""
    entropy = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    draws = np.random.default_rng([seed, entropy]).integers(0, n_items, size=(resamples, n_items))
    flat = draws + (np.arange(resamples) * n_items)[:, None]
    counts = np.bincount(flat.ravel(), minlength=resamples * n_items).reshape(resamples, n_items)
    counts = counts.astype(np.float64)
    counts.flags.writeable = False
    return counts


@lru_cache(maxsize=16)
def seed_counts(n_seeds: int, resamples: int, seed: int) -> np.ndarray:
    """(1 + resamples, n_seeds) float64 seed-draw counts: row 0 all ones (the full sample), row b how
    often each seed is drawn by resample b (n_seeds draws with replacement). The stream is
    ``numpy.random.default_rng([seed, n_seeds, sha256("seeds")[:8]])``: the same for every row with
    ``n_seeds`` seeds; one seed is always drawn once. Read-only (cached)."""
    if n_seeds == 1:
        counts = np.ones((1 + resamples, 1))
    else:
        entropy = int.from_bytes(hashlib.sha256(b"seeds").digest()[:8], "little")
        draws = np.random.default_rng([seed, n_seeds, entropy]).integers(0, n_seeds, (resamples, n_seeds))
        counts = np.vstack([np.ones((1, n_seeds)), (draws[:, :, None] == np.arange(n_seeds)).sum(axis=1)])
        counts = counts.astype(np.float64)
    counts.flags.writeable = False
    return counts


def run_items(
    store: ResultsStore, run: pd.DataFrame, dim: int | None = None, precision: str = "float32"
) -> dict[TaskId, ItemScores]:
    """{task: its per-item scores} of one run's main-metric records at (``dim``, default the run's full
    dim; ``precision``), read from the store's sidecar. Raises :class:`MissingItems`."""
    rows = main_metric_rows(run)
    if rows.empty:
        raise MissingItems("no held-out results", "not evaluated")
    dim = full_dim(run) if dim is None else dim
    rows = rows[(rows["dim"] == dim) & (rows["precision"] == precision)]
    if rows.empty:
        raise MissingItems(f"no results at dim {dim}, {precision}", "not evaluated")
    out: dict[TaskId, ItemScores] = {}
    for rec in rows.to_dict(orient="records"):
        task = tuple(None if isna(rec.get(f)) else rec.get(f) for f in TASK_FIELDS)
        ref = rec.get("items")
        if not store.has_items(None if isna(ref) else ref):  # an older store, or a deleted sidecar
            raise MissingItems(
                f"run {rec.get('run_id')} has no per-item scores for {task_name(task)}", "re-evaluate"
            )
        items = store.read_items(ref).get((dim, precision))
        if items is None:
            raise MissingItems(f"the sidecar {ref} has no items at dim {dim}, {precision}", "re-evaluate")
        if task in out:
            raise MissingItems(f"task {task_name(task)} appears twice in run {rec.get('run_id')}")
        out[task] = items
    return out


@dataclass(frozen=True, eq=False)
class Replicates:
    """One row's main metric per task: ``values[task]`` (1 + B,), column 0 the full sample, then the B
    resamples (seed-weighted means, module docstring); ``identities[task]`` its items; ``seeds`` S."""

    values: dict[TaskId, np.ndarray]
    identities: dict[TaskId, str]
    resamples: int
    seed: int
    seeds: int = 1

    @cached_property
    def levels(self) -> dict[str, np.ndarray]:
        """{task type: (1 + B,) its average, "overall": (1 + B,)} by :mod:`jina5.eval.summary`'s rule."""
        return aggregate(self.values)


def row_replicates(
    seeds: Sequence[Mapping[TaskId, ItemScores]],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Replicates:
    """A row's :class:`Replicates` from the per-item scores of each of its seeds (:func:`run_items`), in
    seed order: both levels of the module docstring's resampling (seeds by :func:`seed_counts`, items by
    :func:`resample_counts`).

    Every seed must have the same tasks with the same items (else :class:`MissingItems`)."""
    if not seeds:
        raise MissingItems("no runs")
    tasks = list(seeds[0])
    identities = {t: seeds[0][t].identity for t in tasks}
    for other in seeds[1:]:
        if set(other) != set(tasks) or any(other[t].identity != identities[t] for t in tasks):
            raise MissingItems("the seeds of a row were scored on different items", "seeds differ")
    drawn = seed_counts(len(seeds), resamples, seed)  # (1 + B, S)
    values = {}
    for task in tasks:
        n = seeds[0][task].n_items
        counts = np.vstack([np.ones((1, n)), resample_counts(n, resamples, seed, task_name(task))])
        per_seed = np.stack([s[task].resampled(counts) for s in seeds], axis=1)  # (1 + B, S)
        values[task] = (drawn * per_seed).sum(axis=1) / len(seeds)
    return Replicates(values, identities, resamples, seed, len(seeds))


def aggregate(values: Mapping[TaskId, np.ndarray]) -> dict[str, np.ndarray]:
    """{task type: mean over its data sets of the mean over each data set's tasks, "overall": mean of the
    type means}, column by column, with :func:`jina5.eval.summary.dataset_means` / ``type_means`` /
    ``overall_mean`` (the tables' own rule)."""
    tasks = list(values)
    columns = list(range(len(next(iter(values.values())))))
    frame = pd.concat(
        [
            pd.DataFrame({"task": [t[0] for t in tasks], "dataset": [t[1] for t in tasks]}),
            pd.DataFrame(np.stack([values[t] for t in tasks]), columns=columns),
        ],
        axis=1,
    )
    types = type_means(dataset_means(frame, columns))
    out = {t: v.to_numpy() for t, v in types.items()}
    out["overall"] = overall_mean(types).to_numpy()
    return out


def difference(candidate: Replicates, reference: Replicates) -> dict[str, np.ndarray]:
    """{level: (1 + B,) candidate - reference}; both rows need the same tasks, items and resamples."""
    if (candidate.resamples, candidate.seed) != (reference.resamples, reference.seed):
        raise ValueError("replicates from different resamples cannot be paired")
    if candidate.identities != reference.identities:
        missing = sorted(task_name(t) for t in set(candidate.identities) ^ set(reference.identities))
        if missing:
            raise MissingItems(
                f"the rows were scored on different tasks: {', '.join(missing)}", "tasks differ"
            )
        raise MissingItems("the rows were scored on different items", "items differ")
    ref = reference.levels
    return {level: values - ref[level] for level, values in candidate.levels.items()}


@dataclass(frozen=True)
class Interval:
    """A paired difference: ``delta`` on the full sample and its percentile interval [low, high]."""

    delta: float
    low: float
    high: float
    confidence: float = CONFIDENCE

    @property
    def verdict(self) -> str:
        """``better`` / ``worse`` when the interval excludes 0, else ``tie``."""
        return "better" if self.low > 0 else "worse" if self.high < 0 else "tie"

    def format(self, scale: float = 100.0) -> str:
        """``+1.23 [+0.40, +2.05]`` (values x ``scale``)."""
        return f"{self.delta * scale:+.2f} [{self.low * scale:+.2f}, {self.high * scale:+.2f}]"

    def as_dict(self) -> dict:
        return {
            "delta": self.delta,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "verdict": self.verdict,
        }


def interval(diff: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """The :class:`Interval` of a (1 + B,) difference: column 0 the estimate, the rest the resamples."""
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(diff[1:], [tail, 100.0 - tail])
    return Interval(float(diff[0]), float(low), float(high), confidence)


def paired_intervals(
    candidate: Replicates, reference: Replicates, confidence: float = CONFIDENCE
) -> dict[str, Interval]:
    """{level (task types, "overall"): the interval of candidate - reference}."""
    return {level: interval(d, confidence) for level, d in difference(candidate, reference).items()}
