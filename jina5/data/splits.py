"""Deterministic train / dev / test splits that never leak evaluation text into training.

``split_corpus(ds, name, seed, fractions)``:

1. **Assign by document, not by row.** The unit is the normalised document text
   (``normalise_text``). Units are ordered by ``sha1(f"{seed}\\0{unit}")`` and cut at the cumulative
   fractions, so every split gets its exact share of units (``round``), the order is fixed by the
   seed alone, and all rows sharing a document land in the same split.
   For ``sts`` rows both texts are units (each text is one of a small document set that recurs across
   pairs, e.g. the 50 Lee documents): a pair is kept in split s only if both its texts were assigned
   to s; pairs straddling two splits are dropped and counted (``cross_split_pairs``).
2. **Deduplicate across splits** on normalised text (query, document and negatives): a dev row sharing
   any text with test is removed from dev, then a train row sharing any text with dev or test is
   removed from train; both counts are logged and recorded.
3. **Record membership.** A JSON manifest at ``cache_root()/splits/<name>-seed<seed>.json`` (other
   fractions than 0.8/0.1/0.1 add ``-<train>-<dev>-<test>`` to the file name):

   .. code-block:: json

      {"name": "news", "seed": 0, "fractions": [0.8, 0.1, 0.1], "version": 1, "corpus_rows": 3729,
       "dropped": {"cross_split_pairs": 0, "dev_overlap": 5, "train_overlap": 21},
       "splits": {"train": {"rows": 2964, "texts": ["<sha1 of each normalised text>", ...]}, ...}}

   A later split with the same name and seed is checked against it; if it disagrees (the corpus or
   the split code changed) ``SplitManifestMismatch`` is raised naming the file: delete it to re-split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from jina5.assets import cache_root
from jina5.atomic import atomic_write_text
from jina5.data.corpora import load_corpus
from jina5.data.schema import normalise_text

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "dev", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
MANIFEST_VERSION = 1


def seeded_rows(n: int, cap: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded draw of ``min(n, cap)`` of ``range(n)`` (all of them when ``cap`` is None).

    The one row-cap rule of the project: training tables, label anchors and evaluation tasks all use it.
    """
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(cap), replace=False))


class SplitManifestMismatch(RuntimeError):
    """A fresh split disagrees with the manifest recorded for the same corpus and seed."""


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if (
        len(fractions) != 3
        or any(f < 0 for f in fractions)
        or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6)
    ):
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1 (train, dev, test), got {fractions}"
        )
    return float(fractions[0]), float(fractions[1]), float(fractions[2])


def text_sha1(normalised: str) -> str:
    """Hex sha1 of an (already normalised) text: the manifest's record of split membership."""
    return hashlib.sha1(normalised.encode("utf-8")).hexdigest()


def _order_key(seed: int, unit: str) -> bytes:
    return hashlib.sha1(f"{seed}\0{unit}".encode()).digest()


def assign_units(units: Iterable[str], seed: int, fractions: Sequence[float]) -> dict[str, int]:
    """Map each distinct unit to a split index (0 train, 1 dev, 2 test): order by seeded hash, cut by fraction."""
    f_train, f_dev, _ = _check_fractions(fractions)
    order = sorted(set(units), key=lambda u: _order_key(seed, u))
    cut_train = round(f_train * len(order))
    cut_dev = round((f_train + f_dev) * len(order))
    return {u: 0 if i < cut_train else 1 if i < cut_dev else 2 for i, u in enumerate(order)}


def _columns(ds: datasets.Dataset, *names: str) -> list[list[Any]]:
    """Whole columns as Python lists (one Arrow conversion, not one per row)."""
    data = ds.select_columns(list(names)).to_dict()
    return [data[n] for n in names]


def _all_row_texts(ds: datasets.Dataset) -> list[frozenset[str]]:
    return [
        _row_texts(q, d, n) for q, d, n in zip(*_columns(ds, "query", "document", "negatives"), strict=True)
    ]


def _row_texts(query: str, document: str, negatives: list[str]) -> frozenset[str]:
    texts = (normalise_text(t) for t in (query, document, *negatives))
    return frozenset(t for t in texts if t)


def dataset_texts(ds: datasets.Dataset) -> set[str]:
    """Every normalised text (query, document, negatives) of ``ds``."""
    return set().union(*_all_row_texts(ds))


def rows_without(ds: datasets.Dataset, texts: set[str]) -> tuple[datasets.Dataset, int]:
    """The rows of ``ds`` none of whose normalised texts (query, document, negatives) is in ``texts``,
    and how many rows were dropped."""
    kept = [i for i, row in enumerate(_all_row_texts(ds)) if row.isdisjoint(texts)]
    return (ds if len(kept) == len(ds) else ds.select(kept)), len(ds) - len(kept)


def training_texts_disjoint(train: datasets.Dataset, *others: datasets.Dataset) -> bool:
    """True when no normalised text of ``train`` occurs in any of ``others`` (e.g. dev, test)."""
    seen = dataset_texts(train)
    return all(seen.isdisjoint(dataset_texts(o)) for o in others)


def _assign_rows(
    ds: datasets.Dataset, texts: list[frozenset[str]], seed: int, fractions: Sequence[float]
) -> tuple[list[list[int]], int]:
    """Row indices of each split before deduplication, and the number of straddling STS pairs dropped."""
    tasks, documents = _columns(ds, "task", "document")
    pair_rows = [t == "sts" for t in tasks]
    docs = [normalise_text(d) for d in documents]
    units = {d for d, pair in zip(docs, pair_rows, strict=True) if not pair}
    units |= {t for ts, pair in zip(texts, pair_rows, strict=True) if pair for t in ts}
    where = assign_units(units, seed, fractions)
    members: list[list[int]] = [[], [], []]
    straddling = 0
    for i, (doc, pair) in enumerate(zip(docs, pair_rows, strict=True)):
        if not pair:
            members[where[doc]].append(i)
            continue
        splits = {where[t] for t in texts[i]}
        if len(splits) == 1:
            members[splits.pop()].append(i)
        else:
            straddling += 1
    return members, straddling


def _drop_overlap(rows: list[int], texts: list[frozenset[str]], held_out: set[str]) -> tuple[list[int], int]:
    kept = [i for i in rows if texts[i].isdisjoint(held_out)]
    return kept, len(rows) - len(kept)


def _manifest(
    name: str,
    seed: int,
    fractions: Sequence[float],
    n_rows: int,
    members: list[list[int]],
    texts: list[frozenset[str]],
    dropped: dict[str, int],
) -> dict[str, Any]:
    splits = {}
    for split, rows in zip(SPLITS, members, strict=True):
        hashes = sorted({text_sha1(t) for i in rows for t in texts[i]})
        splits[split] = {"rows": len(rows), "texts": hashes}
    return {
        "name": name,
        "seed": seed,
        "fractions": list(fractions),
        "version": MANIFEST_VERSION,
        "corpus_rows": n_rows,
        "dropped": dropped,
        "splits": splits,
    }


def manifest_path(name: str, seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> Path:
    """``cache_root()/splits/<name>-seed<seed>.json`` for the default fractions, else
    ``<name>-seed<seed>-<train>-<dev>-<test>.json`` (``/`` in a name becomes ``--``)."""
    fractions = _check_fractions(fractions)
    suffix = "" if fractions == DEFAULT_FRACTIONS else "-" + "-".join(f"{f:g}" for f in fractions)
    return cache_root() / "splits" / f"{name.replace('/', '--')}-seed{seed}{suffix}.json"


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = [
        f"{k}: {old.get(k)!r} != {new[k]!r}"
        for k in ("seed", "fractions", "version", "corpus_rows", "dropped")
        if old.get(k) != new[k]
    ]
    for split in SPLITS:
        a, b = old.get("splits", {}).get(split, {}), new["splits"][split]
        if a.get("rows") != b["rows"] or a.get("texts") != b["texts"]:
            changed = len(set(a.get("texts", [])) ^ set(b["texts"]))
            diffs.append(f"{split}: rows {a.get('rows')} != {b['rows']}, {changed} texts differ")
    return diffs


def check_or_write_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Write ``manifest`` to ``path``, or, if one is there, raise SplitManifestMismatch unless equal."""
    if not path.exists():
        atomic_write_text(path, json.dumps(manifest))
        return
    old = json.loads(path.read_text())
    diffs = _differences(old, manifest)
    if diffs:
        raise SplitManifestMismatch(
            f"{path}: the split of {manifest['name']!r} (seed {manifest['seed']}) differs from the recorded "
            f"manifest ({'; '.join(diffs)}); the corpus or the split code changed. Delete the file to re-split."
        )


def split_corpus(
    ds: datasets.Dataset,
    name: str,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    write_manifest: bool = True,
) -> dict[str, datasets.Dataset]:
    """Split ``ds`` into ``{"train", "dev", "test"}`` by document, deduplicated across splits (module doc).

    With ``write_manifest`` the membership is recorded at ``manifest_path(name, seed, fractions)`` (or
    checked against the one there).
    """
    fractions = _check_fractions(fractions)
    texts = _all_row_texts(ds)
    (train, dev, test), straddling = _assign_rows(ds, texts, seed, fractions)
    test_texts = {t for i in test for t in texts[i]}
    dev, dev_overlap = _drop_overlap(dev, texts, test_texts)
    held_out = test_texts | {t for i in dev for t in texts[i]}
    train, train_overlap = _drop_overlap(train, texts, held_out)
    dropped = {"cross_split_pairs": straddling, "dev_overlap": dev_overlap, "train_overlap": train_overlap}
    logger.info(
        "split %s (seed %d): train %d, dev %d, test %d rows; dropped %d train rows sharing text with dev/test, "
        "%d dev rows sharing text with test, %d STS pairs straddling splits",
        name,
        seed,
        len(train),
        len(dev),
        len(test),
        train_overlap,
        dev_overlap,
        straddling,
    )
    members = [train, dev, test]
    if write_manifest:
        check_or_write_manifest(
            _manifest(name, seed, fractions, len(ds), members, texts, dropped),
            manifest_path(name, seed, fractions),
        )
    return {split: ds.select(rows) for split, rows in zip(SPLITS, members, strict=True)}


class CorpusSplits:
    """The splits of bundled corpora at one seed, each computed once (``split_corpus(load_corpus(name))``,
    manifest checked) per (corpus, fractions) for this object's lifetime: a training data module reads
    one corpus up to three times (its pairs, its texts, its held-out texts). ``fractions`` None: the
    default ones."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._parts: dict[tuple[str, tuple[float, float, float]], dict[str, datasets.Dataset]] = {}

    def parts(self, name: str, fractions: Sequence[float] | None = None) -> dict[str, datasets.Dataset]:
        """``{"train", "dev", "test"}`` of corpus ``name``."""
        key = (name, _check_fractions(fractions or DEFAULT_FRACTIONS))
        if key not in self._parts:
            self._parts[key] = split_corpus(load_corpus(name), name, self.seed, key[1])
        return self._parts[key]

    def split(self, name: str, split: str, fractions: Sequence[float] | None = None) -> datasets.Dataset:
        if split not in SPLITS:
            raise KeyError(f"split {split!r} not in {SPLITS}")
        return self.parts(name, fractions)[split]

    def held_out_texts(self, name: str, fractions: Sequence[float] | None = None) -> set[str]:
        """Every normalised text of corpus ``name``'s dev and test splits: what an evaluation or the
        in-training dev check may read, so what training must not. For a corpus evaluated whole
        (lee_sts, ``fractions`` (0, 0, 1)) that is every text it has."""
        parts = self.parts(name, fractions)
        return dataset_texts(parts["dev"]) | dataset_texts(parts["test"])


def held_out_texts(name: str, seed: int = 0, fractions: Sequence[float] | None = None) -> set[str]:
    """``CorpusSplits(seed).held_out_texts(name, fractions)``: corpus ``name``'s dev and test texts."""
    return CorpusSplits(seed).held_out_texts(name, fractions)


def load_split(
    name: str, split: str, seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> datasets.Dataset:
    """Split ``split`` (train | dev | test) of bundled corpus ``name``, checked against its manifest."""
    if split not in SPLITS:
        raise KeyError(f"split {split!r} not in {SPLITS}")
    return split_corpus(load_corpus(name), name, seed, fractions)[split]
