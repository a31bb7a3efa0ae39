"""Pair tables: the rows of one training dataset, flattened for fast batching.

A dataset (``DatasetSpec``) is a bundled corpus (``corpus``, default ``name``; its train split) or any
``load_source`` source (``source``: ``hf:<name>[:<config>]:<split>`` or a local file / directory, with a
``columns`` mapping), used as it is. ``load_pair_table`` turns its rows into a ``PairTable`` of

- given pairs: query -> document [+ negatives, score];
- ``unlabeled`` documents: (first sentence, the rest) pairs;
- ``label_triplets``: (anchor, a same-label positive, ``label_negatives`` other-label negatives) from
  labelled texts (the classification adapter);

capped at ``max_rows`` rows by ``seeded_rows`` (counted in the log; an ``hf:`` source is capped while
read instead: its first ``max_rows`` rows, and under DDP the table holds the rank's share of them). A ``texts_only`` dataset is no pair
table: ``load_pair_table`` takes the distinct texts of its rows (``document``, and ``query`` where the
corpus has one) as single texts for distillation only (the table's ``documents``; ``queries`` stays
empty), minus the texts ``seen`` elsewhere in the mix, capped at ``max_rows`` texts.

Every loader drops the rows that hold a ``held_out`` text (normalised; the dev and test texts of the
evaluated corpora, ``jina5.data.splits.held_out_texts``), so a corpus whose train split shares text
with another corpus's test split cannot leak it. ``attach_teacher`` fills the teacher
vectors from the TeacherCache; ``attach_hard_negatives`` mines negatives for a table without its own
(``jina5.data.hard_negatives``; the stage-1 model = the student with its adapters disabled).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence, Set
from dataclasses import dataclass, field

import datasets
import numpy as np
import pyarrow.compute as pc

from jina5.data.hard_negatives import MiningConfig, mine_hard_negatives
from jina5.data.languages import language_codes
from jina5.data.schema import dataset_stats, normalise_text
from jina5.data.sources import EmptySourceError, load_source, no_query_way_out
from jina5.data.splits import CorpusSplits, rows_without, seeded_rows
from jina5.model.encoder import Encoder
from jina5.model.settings import non_negative, positive_int
from jina5.teacher.cache import TeacherCache, TeacherRows

log = logging.getLogger(__name__)


@dataclass
class DatasetSpec:
    """One training dataset of the mix (a bundled corpus name, or a source) and its per-step settings."""

    name: str
    batch_size: int = 32
    query_max_length: int = 32
    document_max_length: int = 128
    max_rows: int | None = None  # cap on training rows (CPU budget); None = all. An hf: source reads only
    # its first max_rows rows (a cap applied while reading; the other sources: a seeded draw after loading)
    weight: float | None = None  # sampling weight; None = rows, or texts / 2 when texts_only (datamodule)
    unlabeled: bool = False  # document-only corpus: pairs made as (first sentence, rest)
    source: str | None = None  # hf:<name>[:<config>]:<split> | local file/dir; None = bundled corpus `corpus`
    corpus: str | None = None  # the bundled corpus read (its split); None = `name` (news_texts: corpus news)
    columns: dict[str, str] | None = None  # source column -> schema column, e.g. {sentence1: query}
    task: str | None = None  # schema task of source rows that carry none (e.g. sts)
    label_triplets: bool = False  # rows = (anchor, same-label positive, other-label negatives)
    label_negatives: int = 7  # other-label negatives per anchor (paper: 7)
    texts_only: bool = False  # single texts (document + query columns, deduplicated) for distillation
    # only: no pair, so pair losses skip its batches (jina5.training.objective); max_rows counts texts
    streaming: bool = False  # an hf: source streamed (datasets IterableDataset), not memory-mapped Arrow
    allow_small: bool = False  # fewer rows than batch_size x world_size: repeat rows (OneDatasetPerStep)
    language: str = ""  # ISO 639 code of a source's texts, for rows that carry none (jina5.data.languages)

    def __post_init__(self) -> None:
        key = f"data.datasets.{self.name}"
        positive_int(self.batch_size, f"{key}.batch_size", "rows per step of this dataset")
        positive_int(self.query_max_length, f"{key}.query_max_length", "tokens per query")
        positive_int(self.document_max_length, f"{key}.document_max_length", "tokens per document")
        positive_int(self.label_negatives, f"{key}.label_negatives", "other-label negatives per anchor")
        if self.max_rows is not None:
            positive_int(self.max_rows, f"{key}.max_rows", "rows read; null reads all")
        if self.weight is not None:
            non_negative(self.weight, f"{key}.weight", "its share of the steps; null: its rows")
        if self.streaming and not (self.source or "").startswith("hf:"):
            raise ValueError(
                f"dataset {self.name!r}: streaming: true needs an hf: source, got {self.source!r}"
            )
        if self.source and self.corpus:
            raise ValueError(f"dataset {self.name!r}: give a source or a bundled corpus, not both")
        if self.language and not self.source:
            raise ValueError(
                f"dataset {self.name!r}: language is for a source's rows; the bundled corpus "
                f"{self.corpus or self.name!r} carries its own (drop language)"
            )
        if self.texts_only and (self.unlabeled or self.label_triplets):
            kind = "unlabeled" if self.unlabeled else "label_triplets"
            raise ValueError(f"dataset {self.name!r}: texts_only and {kind} are two kinds of rows; pick one")


@dataclass
class PairTable:
    """The rows of one dataset, flattened for fast batching. A texts-only table (``spec.texts_only``)
    holds its N texts in ``documents`` and nothing else (no queries, negatives, scores, labels)."""

    spec: DatasetSpec
    queries: list[str]
    documents: list[str]
    negatives: list[list[str]] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    teacher_query: TeacherRows | None = None  # (N, Dt) float32 when indexed; None for a texts-only table
    teacher_document: TeacherRows | None = None
    shard: tuple[int, int] = (0, 1)  # (rank, world): rank's share of the rows (an hf: source); (0, 1): all
    stats: dict = field(default_factory=dict)  # how the rows were read and dropped (the data manifest)

    def __len__(self) -> int:
        return len(self.documents)

    @property
    def texts_only(self) -> bool:
        return self.spec.texts_only

    @property
    def rank_local(self) -> bool:
        """The rows are this rank's own share: each rank batches its own table (not a slice of a common one)."""
        return self.shard[1] > 1

    @property
    def texts(self) -> int:
        """Texts a pass over the table distils: 2 per pair row, 1 per texts-only row."""
        return len(self) if self.texts_only else 2 * len(self)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_first_sentence(text: str) -> tuple[str, str] | None:
    """(first sentence, the rest) of a document, or None when it has a single sentence."""
    parts = _SENTENCE_END.split(text.strip(), maxsplit=1)
    if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
        return None
    return parts[0], parts[1]


def label_triplets(
    texts: Sequence[str], labels: Sequence[str], anchors: Sequence[int], n_negatives: int, seed: int
) -> tuple[list[str], list[str], list[list[str]], list[str]]:
    """(anchor, positive, negatives, label) rows for the ``anchors`` (indices into texts): the positive a
    seeded draw among the anchor's other same-label texts, the negatives ``n_negatives`` draws (without
    replacement) among texts of any other label. Anchors whose label has no other text are skipped."""
    labels_arr = np.asarray(labels, dtype=object)
    keys = [normalise_text(t) for t in texts]
    by_label: dict[str, np.ndarray] = {lab: np.flatnonzero(labels_arr == lab) for lab in sorted(set(labels))}
    if len(by_label) < 2:
        raise ValueError(f"label triplets need at least 2 labels, got {sorted(by_label)}")
    other_label = {
        lab: np.flatnonzero(labels_arr != lab) for lab in by_label
    }  # once per label, not per anchor
    queries, documents, negatives, out_labels = [], [], [], []
    for a in anchors:
        rng = np.random.default_rng([seed, int(a)])
        same = [j for j in by_label[labels[a]] if keys[j] != keys[a]]
        if not same:
            continue
        other = other_label[labels[a]]
        queries.append(texts[a])
        documents.append(texts[int(rng.choice(same))])
        negatives.append(
            [texts[j] for j in rng.choice(other, size=min(n_negatives, len(other)), replace=False)]
        )
        out_labels.append(labels[a])
    return queries, documents, negatives, out_labels


def load_rows(
    spec: DatasetSpec,
    split: str = "train",
    split_seed: int = 0,
    held_out: Set[str] = frozenset(),
    splits: CorpusSplits | None = None,
    shard: tuple[int, int] = (0, 1),
) -> tuple[datasets.Dataset, dict]:
    """The schema rows of a spec: its source as it is (``spec.source``; an hf: source read up to
    ``max_rows`` rows, streamed when ``spec.streaming``, and only ``shard = (rank, world)``'s share of
    them), else the bundled corpus's split (from ``splits`` when given, which must be at ``split_seed``:
    corpora split once for several specs); without the rows holding a ``held_out`` text (normalised),
    counted in the log. Returns the rows and their stats (the source's, ``held_out_dropped``, and the rows'
    ``languages``: ``jina5.data.languages``)."""
    if spec.source:
        hf = spec.source.startswith("hf:")
        ds = load_source(
            spec.source,
            spec.columns,
            task=spec.task,
            dataset=spec.name,
            language=spec.language,
            drop_incomplete=True,
            max_rows=spec.max_rows if hf else None,
            streaming=spec.streaming,
            shard=shard if hf else (0, 1),
        )
    else:
        if splits is not None and splits.seed != split_seed:
            raise ValueError(f"splits are at seed {splits.seed}; dataset {spec.name!r} asks for {split_seed}")
        ds = (splits or CorpusSplits(split_seed)).split(spec.corpus or spec.name, split)
    stats = {**dataset_stats(ds), "held_out_dropped": 0}
    if held_out:
        ds, dropped = rows_without(ds, set(held_out))
        stats["held_out_dropped"] = dropped
        if dropped:
            log.info("%s/%s: dropped %d rows holding a held-out (dev/test) text", spec.name, split, dropped)
    languages = pc.unique(ds.with_format("arrow")["language"]).to_pylist()  # Dataset.unique prints a bar
    stats["languages"] = language_codes(languages, spec.name)
    return ds, stats


def _no_pair(spec: DatasetSpec, split: str, ds: datasets.Dataset, why: str) -> EmptySourceError:
    """The error for a pair dataset left without a row: names the dataset, where its rows came from
    (source file or bundled corpus), what the source dropped and what was left after each step."""
    origin = f"data source {spec.source!r}" if spec.source else f"bundled corpus {spec.corpus or spec.name!r}"
    stats = dataset_stats(ds)
    dropped = f", the source dropped {stats['filtered']}" if stats.get("filtered") else ""
    return EmptySourceError(
        f"dataset {spec.name!r} ({origin}): no usable pair in its {split} split: {len(ds)} rows without a "
        f"held-out (dev/test) text{dropped}; {why}"
    )


def distinct_texts(ds: datasets.Dataset) -> list[str]:
    """The non-empty ``document`` then ``query`` texts of ``ds``, stripped, first of each normalised text."""
    columns = ds.select_columns(["document", "query"]).to_dict()  # one Arrow conversion, not one per row
    seen: set[str] = set()
    out = []
    for text in (*columns["document"], *columns["query"]):
        text = text.strip()
        key = normalise_text(text)
        if key and key not in seen:
            seen.add(key)
            out.append(text)
    return out


def _texts_only_table(
    spec: DatasetSpec,
    split: str,
    ds: datasets.Dataset,
    stats: dict,
    row_seed: int,
    seen: Set[str],
    shard: tuple[int, int],
) -> PairTable:
    """The texts-only table of ``ds`` (``spec``'s ``split`` rows, no row holding a held-out text): its
    ``distinct_texts`` that are not ``seen`` (normalised texts the mix distils already),
    capped at ``max_rows`` texts by a seeded draw. Raises ValueError naming the dataset when none is left."""
    pool = distinct_texts(ds)
    texts = [t for t in pool if normalise_text(t) not in seen]
    if not texts:
        raise ValueError(
            f"texts-only dataset {spec.name!r}: no usable text in its {split} split: {len(ds)} rows without "
            f"a held-out (dev/test) text, {len(pool)} distinct texts among them, {len(pool)} already in the mix"
        )
    keep = seeded_rows(len(texts), spec.max_rows, row_seed)
    log.info(
        "%s/%s: texts-only: %d distinct texts, %d already in the mix; using %d (max_rows %s)",
        spec.name,
        split,
        len(pool),
        len(pool) - len(texts),
        len(keep),
        spec.max_rows,
    )
    stats["seen_dropped"] = len(pool) - len(texts)
    return PairTable(spec, queries=[], documents=[texts[i] for i in keep], shard=shard, stats=stats)


def load_pair_table(
    spec: DatasetSpec,
    split: str = "train",
    split_seed: int = 0,
    row_seed: int = 0,
    held_out: Set[str] = frozenset(),
    splits: CorpusSplits | None = None,
    shard: tuple[int, int] = (0, 1),
    seen: Set[str] = frozenset(),
) -> PairTable:
    """Rows of ``spec.name``'s ``split`` (or of ``spec.source``: ``shard``'s share of an hf: source)
    without any row holding a ``held_out`` text, capped at ``max_rows`` by a seeded draw (counted in the
    log). Raises EmptySourceError naming the dataset when no pair is left (before any teacher or model
    work on the mix). A ``texts_only`` spec gives a texts-only table: its distinct texts not ``seen``."""
    ds, stats = load_rows(spec, split, split_seed, held_out, splits, shard)
    if spec.texts_only:
        return _texts_only_table(spec, split, ds, stats, row_seed, seen, shard)
    if spec.label_triplets:
        cols = ds.select_columns(["document", "label"]).to_dict()
        texts, labels = cols["document"], cols["label"]
        usable = [
            i for i, (t, lab) in enumerate(zip(texts, labels, strict=True)) if t.strip() and lab.strip()
        ]
        anchors = [usable[i] for i in seeded_rows(len(usable), spec.max_rows, row_seed)]
        if len(anchors) < len(usable):
            log.info(
                "%s/%s: using %d of %d labelled texts as anchors (max_rows)",
                spec.name,
                split,
                len(anchors),
                len(usable),
            )
        if not anchors:
            raise _no_pair(spec, split, ds, "no row has both a text and a label")
        distinct = sorted({labels[i] for i in usable})
        if len(distinct) < 2:
            raise _no_pair(
                spec, split, ds, f"label triplets need texts of 2 labels or more, it has {distinct}"
            )
        q, d, n, lab = label_triplets(texts, labels, anchors, spec.label_negatives, row_seed)
        if not q:
            raise _no_pair(spec, split, ds, f"none of {len(anchors)} anchors has another text of its label")
        if len(q) < len(anchors):
            log.info(
                "%s: %d anchors have no other text of their label; skipped", spec.name, len(anchors) - len(q)
            )
        stats["no_same_label_text"] = len(anchors) - len(q)
        return PairTable(spec, q, d, n, [None] * len(q), lab, shard=shard, stats=stats)
    cols = ds.select_columns(["query", "document", "negatives", "score", "label"]).to_dict()  # one conversion
    queries, documents = cols["query"], cols["document"]
    negatives, scores, labels = cols["negatives"], cols["score"], cols["label"]
    if spec.unlabeled:
        pairs = [split_first_sentence(d) for d in documents]
        kept = [i for i, p in enumerate(pairs) if p is not None]
        if len(kept) < len(pairs):
            log.info(
                "%s: %d of %d unlabeled documents have one sentence and make no pair; skipped",
                spec.name,
                len(pairs) - len(kept),
                len(pairs),
            )
        stats["one_sentence"] = len(pairs) - len(kept)
        queries = [pairs[i][0] for i in kept]
        documents = [pairs[i][1] for i in kept]
        negatives, scores, labels = (
            [negatives[i] for i in kept],
            [scores[i] for i in kept],
            [labels[i] for i in kept],
        )
    if not queries:
        why = f"{len(ds)} unlabeled documents, none with two sentences" if spec.unlabeled else "no row"
        raise _no_pair(spec, split, ds, why)
    missing = [i for i, q in enumerate(queries) if not q.strip()]
    if missing:
        raise ValueError(
            f"{spec.name}/{split}: rows {missing[:5]} have no query; {no_query_way_out(spec.name)}"
        )
    keep = seeded_rows(len(queries), spec.max_rows, row_seed)
    if len(keep) < len(queries):
        log.info("%s/%s: using %d of %d rows (max_rows)", spec.name, split, len(keep), len(queries))
        queries, documents = [queries[i] for i in keep], [documents[i] for i in keep]
        negatives, scores, labels = (
            [negatives[i] for i in keep],
            [scores[i] for i in keep],
            [labels[i] for i in keep],
        )
    return PairTable(spec, queries, documents, negatives, scores, labels, shard=shard, stats=stats)


def attach_teacher(
    tables: Sequence[PairTable], query_cache: TeacherCache, document_cache: TeacherCache
) -> None:
    """Attach every table's teacher vectors from the caches (computing, once, what is missing): queries
    under the query instruction, documents (and a texts-only table's texts) under the document one.
    Each table holds lazy ``TeacherRows`` views (8 bytes a text), read from the memory-mapped store."""
    query_cache.fill([q for t in tables for q in t.queries])
    document_cache.fill([d for t in tables for d in t.documents])
    for t in tables:
        t.teacher_query = None if t.texts_only else query_cache.rows(t.queries)
        t.teacher_document = document_cache.rows(t.documents)


def attach_hard_negatives(table: PairTable, encoder: Encoder, cfg: MiningConfig) -> None:
    """Mine ``cfg.num_negatives`` hard negatives per row of ``table`` (module doc of
    ``jina5.data.hard_negatives``) with the stage-1 model: ``encoder`` with every adapter disabled,
    over the table's documents deduplicated on normalised text."""
    keys = [normalise_text(d) for d in table.documents]
    unique: dict[str, int] = {}
    corpus: list[str] = []
    for key, doc in zip(keys, table.documents, strict=True):
        if key not in unique:
            unique[key] = len(corpus)
            corpus.append(doc)
    positive = [unique[k] for k in keys]
    with encoder.adapters_disabled():
        q = encoder.encode(table.queries, prompt="query", batch_size=cfg.batch_size)
        d = encoder.encode(corpus, prompt="document", batch_size=cfg.batch_size)
    mined, stats = mine_hard_negatives(q, d, positive, cfg)
    table.negatives = [[corpus[j] for j in row] for row in mined]
    log.info(
        "%s: mined %d hard negatives per row for %d rows over %d documents (ranks %s); dropped %d "
        "candidates as likely false negatives (margin %.3g), %d as near-duplicates of the positive; "
        "%d taken outside the rank window; %d rows got fewer",
        table.spec.name,
        cfg.num_negatives,
        stats.rows,
        len(corpus),
        list(cfg.rank_range),
        stats.dropped_margin,
        cfg.margin,
        stats.dropped_near_duplicate,
        stats.from_top_up,
        stats.short_rows,
    )
