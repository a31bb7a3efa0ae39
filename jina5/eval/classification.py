"""Linear-probe classification, MTEB style: accuracy (main) and macro-F1.

For every seed: shuffle the training indices with ``numpy.random.default_rng(seed)`` and keep,
in that order, the first ``n_per_class`` examples of each label (all of a smaller class), as
MTEB's undersampling; fit ``LogisticRegression(max_iter=max_iter, random_state=seed)`` on the
frozen embeddings of that sample; predict the whole test set. Records hold the mean over seeds
of ``accuracy`` = mean(pred == y) and ``f1_macro`` = mean over classes of F1 (sklearn).

Only the training texts some seed samples are encoded, together with the test texts, once at
full dim in float32 (``prompt="document"``); settings derive as in :mod:`jina5.eval.metrics`:
int8 features are the dequantized codes (ranges from all encoded vectors), binary features are
the +-1 sign vectors.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from jina5.eval.items import classification_items
from jina5.eval.metrics import Encode, encode_full, record, variants

log = logging.getLogger(__name__)


def undersample(labels: Sequence[Hashable], n_per_class: int, seed: int) -> np.ndarray:
    """Indices of at most ``n_per_class`` examples per label, from a seeded shuffle (MTEB)."""
    order = np.random.default_rng(seed).permutation(len(labels))
    taken: Counter = Counter()
    keep = []
    for i in order:
        if taken[labels[i]] < n_per_class:
            taken[labels[i]] += 1
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def probe_samples(
    labels: Sequence[Hashable], n_per_class: int, seeds: Sequence[int]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each seed's :func:`undersample` of the training rows, and their sorted union: the training rows
    that are encoded."""
    samples = [undersample(labels, n_per_class, s) for s in seeds]
    return samples, np.unique(np.concatenate(samples))


def evaluate_classification(
    encode: Encode,
    train_texts: Sequence[str],
    train_labels: Sequence[Hashable],
    test_texts: Sequence[str],
    test_labels: Sequence[Hashable],
    dims: Sequence[int | None] | None,
    precisions: Sequence[str],
    *,
    n_per_class: int,
    seeds: Sequence[int],
    max_iter: int,
    prompt: str | None = "document",
) -> list[dict]:
    """Mean test accuracy and macro-F1 over ``seeds`` of a logistic regression per (dim, precision);
    the ``accuracy`` records carry ``items``: which test texts each seed's probe got right
    (:func:`jina5.eval.items.classification_items`)."""
    if len(train_texts) != len(train_labels) or len(test_texts) != len(test_labels):
        raise ValueError(
            f"texts/labels lengths differ: train {len(train_texts)}/{len(train_labels)}, "
            f"test {len(test_texts)}/{len(test_labels)}"
        )
    if len(set(train_labels)) < 2:
        raise ValueError("classification needs at least 2 training labels")
    if not seeds or not test_texts:
        raise ValueError("classification needs at least one seed and one test text")
    samples, used = probe_samples(train_labels, n_per_class, seeds)  # each sampled text encoded once
    pos = {int(i): j for j, i in enumerate(used)}
    train_emb = encode_full(encode, [train_texts[i] for i in used], prompt=prompt)
    test_emb = encode_full(encode, test_texts, prompt=prompt)
    y_train = np.asarray(train_labels, dtype=object)
    y_test = np.asarray(test_labels, dtype=object)

    records, n_unconverged = [], 0
    for dim, precision, (x_train, x_test) in variants([train_emb, test_emb], dims, precisions):
        acc, f1, correct = [], [], []
        for seed, idx in zip(seeds, samples, strict=True):
            clf = LogisticRegression(max_iter=max_iter, random_state=seed)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                clf.fit(x_train[[pos[int(i)] for i in idx]], y_train[idx].tolist())
            n_unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
            pred = clf.predict(x_test)
            correct.append(pred == y_test)
            acc.append(accuracy_score(y_test.tolist(), pred.tolist()))
            f1.append(f1_score(y_test.tolist(), pred.tolist(), average="macro"))
        accuracy = record("classification", "accuracy", dim, precision, np.mean(acc))
        items = classification_items(np.stack(correct), test_texts, test_labels)
        records.append({**accuracy, "items": items})
        records.append(record("classification", "f1_macro", dim, precision, np.mean(f1)))
    if n_unconverged:
        log.info("classification: %d logistic-regression fits hit max_iter=%d", n_unconverged, max_iter)
    return records
