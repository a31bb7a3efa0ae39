"""Training data: pair datasets -> one-dataset-per-step batches -> tokenised tensors + teacher vectors.

    corpus train split (schema rows) --PairTable--> texts + teacher vectors (TeacherCache)
      --OneDatasetPerStep--> [row ids of one dataset] --PairCollator--> tensors for the module

Every step draws ONE dataset (probability proportional to its row count, or to its configured
weight) and takes that dataset's batch size and max lengths, as the paper does.

A dataset is a bundled corpus (``name``; its train split) or any ``load_source`` source (``source``:
``hf:<name>[:<config>]:<split>`` or a local file / directory, with a ``columns`` mapping), used as it
is. Rows come as given pairs (query -> document [+ negatives, score]), as (first sentence, rest) of
unlabeled documents (``unlabeled``), or as label triplets (``label_triplets``: anchor, a same-label
positive and ``label_negatives`` other-label negatives, from labelled texts; the classification
adapter). With ``hard_negatives`` set, every dataset without negatives of its own gets mined ones
(``jina5.data.hard_negatives``; the stage-1 model = the student with its adapters disabled). The batch stream is a
pure function of (seed, step), so a resumed run continues with exactly the batches an uninterrupted
run would have seen, and each DDP rank takes its own rows of the same dataset at the same step.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import datasets
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from jina5.data.hard_negatives import MiningConfig, mine_hard_negatives
from jina5.data.schema import normalise_text
from jina5.data.sources import load_source
from jina5.data.splits import load_split
from jina5.encoder import StudentEncoder
from jina5.teacher import Teacher, TeacherCache

log = logging.getLogger(__name__)


@dataclass
class DatasetSpec:
    """One training dataset of the mix (a bundled corpus name, or a source) and its per-step settings."""

    name: str
    batch_size: int = 32
    query_max_length: int = 32
    document_max_length: int = 128
    max_rows: int | None = None  # cap on training rows (CPU budget); None = all
    weight: float | None = None  # sampling weight; None = proportional to rows
    unlabeled: bool = False  # document-only corpus: pairs made as (first sentence, rest)
    source: str | None = None  # hf:<name>[:<config>]:<split> | local file/dir; None = bundled corpus `name`
    columns: dict[str, str] | None = None  # source column -> schema column, e.g. {sentence1: query}
    task: str | None = None  # schema task of source rows that carry none (e.g. sts)
    label_triplets: bool = False  # rows = (anchor, same-label positive, other-label negatives)
    label_negatives: int = 7  # other-label negatives per anchor (paper: 7)


@dataclass
class PairTable:
    """The rows of one dataset, flattened for fast batching."""

    spec: DatasetSpec
    queries: list[str]
    documents: list[str]
    negatives: list[list[str]] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    teacher_query: np.ndarray | None = None  # (N, Dt) float32
    teacher_document: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.queries)


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


def load_rows(spec: DatasetSpec, split: str = "train", split_seed: int = 0) -> datasets.Dataset:
    """The schema rows of a spec: its source as it is (``spec.source``), else the bundled corpus's split."""
    if spec.source:
        return load_source(spec.source, spec.columns, task=spec.task, dataset=spec.name, drop_incomplete=True)
    return load_split(spec.name, split, seed=split_seed)


def _cap(n: int, max_rows: int | None, seed: int) -> np.ndarray:
    """Sorted row indices: all n, or a seeded draw of max_rows of them."""
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))


def load_pair_table(
    spec: DatasetSpec, split: str = "train", split_seed: int = 0, row_seed: int = 0
) -> PairTable:
    """Rows of ``spec.name``'s ``split`` (or of ``spec.source``), capped at ``max_rows`` by a seeded draw
    (counted in the log)."""
    ds = load_rows(spec, split, split_seed)
    if spec.label_triplets:
        texts, labels = list(ds["document"]), list(ds["label"])
        usable = [
            i for i, (t, lab) in enumerate(zip(texts, labels, strict=True)) if t.strip() and lab.strip()
        ]
        anchors = [usable[i] for i in _cap(len(usable), spec.max_rows, row_seed)]
        if len(anchors) < len(usable):
            log.info(
                "%s/%s: using %d of %d labelled texts as anchors (max_rows)",
                spec.name,
                split,
                len(anchors),
                len(usable),
            )
        q, d, n, lab = label_triplets(texts, labels, anchors, spec.label_negatives, row_seed)
        if len(q) < len(anchors):
            log.info(
                "%s: %d anchors have no other text of their label; skipped", spec.name, len(anchors) - len(q)
            )
        return PairTable(spec, q, d, n, [None] * len(q), lab)
    queries, documents = list(ds["query"]), list(ds["document"])
    negatives, scores, labels = list(ds["negatives"]), list(ds["score"]), list(ds["label"])
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
        queries = [pairs[i][0] for i in kept]
        documents = [pairs[i][1] for i in kept]
        negatives, scores, labels = (
            [negatives[i] for i in kept],
            [scores[i] for i in kept],
            [labels[i] for i in kept],
        )
    missing = [i for i, q in enumerate(queries) if not q.strip()]
    if missing:
        raise ValueError(f"{spec.name}/{split}: rows {missing[:5]} have no query; a pair dataset needs one")
    keep = _cap(len(queries), spec.max_rows, row_seed)
    if len(keep) < len(queries):
        log.info("%s/%s: using %d of %d rows (max_rows)", spec.name, split, len(keep), len(queries))
        queries, documents = [queries[i] for i in keep], [documents[i] for i in keep]
        negatives, scores, labels = (
            [negatives[i] for i in keep],
            [scores[i] for i in keep],
            [labels[i] for i in keep],
        )
    return PairTable(spec, queries, documents, negatives, scores, labels)


def attach_teacher(
    tables: Sequence[PairTable], query_cache: TeacherCache, document_cache: TeacherCache
) -> None:
    """Fill every table's teacher vectors from the caches (computing, once, what is missing)."""
    query_cache.fill([q for t in tables for q in t.queries])
    document_cache.fill([d for t in tables for d in t.documents])
    for t in tables:
        t.teacher_query = query_cache.get(t.queries)
        t.teacher_document = document_cache.get(t.documents)


def attach_hard_negatives(table: PairTable, encoder: StudentEncoder, cfg: MiningConfig) -> None:
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


def text_id(text: str) -> int:
    """Signed 63-bit hash of the normalised text (duplicate masking in InfoNCE)."""
    return (
        int.from_bytes(hashlib.blake2b(normalise_text(text).encode(), digest_size=8).digest(), "little") >> 1
    )


class OneDatasetPerStep(Sampler[list[tuple[int, int]]]):
    """Infinite stream of batches; batch k is [(dataset index, row index), ...] of ONE dataset.

    Batch k's dataset is drawn from ``Generator(seed, k)``; within a dataset, rows follow a seeded
    permutation per pass, and rank r of W takes the r-th slice of that dataset's next W * batch_size
    rows, so ranks never share rows within a step. ``start_step()`` is read when iteration begins:
    the stream resumes at the trainer's position after a checkpoint restore.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_sizes: Sequence[int],
        weights: Sequence[float],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_step: Callable[[], int] = lambda: 0,
        names: Sequence[str] | None = None,
    ) -> None:
        names = list(names or range(len(sizes)))
        small = [
            f"{nm} ({n} rows < {b} x {world_size})"
            for nm, n, b in zip(names, sizes, batch_sizes, strict=True)
            if n < b * world_size
        ]
        if small:
            raise ValueError(f"datasets need at least batch_size x world_size rows: {', '.join(small)}")
        p = np.asarray(weights, dtype=np.float64)
        self.probs = p / p.sum()
        self.sizes, self.batch_sizes = list(sizes), list(batch_sizes)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.start_step = start_step

    def dataset_at(self, step: int) -> int:
        return int(np.random.default_rng([self.seed, step]).choice(len(self.sizes), p=self.probs))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        start = self.start_step()
        used = [0] * len(self.sizes)  # batches drawn so far from each dataset
        perms: dict[tuple[int, int], np.ndarray] = {}
        step = 0
        while True:
            d = self.dataset_at(step)
            b, n = self.batch_sizes[d], self.sizes[d]
            per_pass = n // (b * self.world_size)
            epoch, j = divmod(used[d], per_pass)
            used[d] += 1
            if step >= start:
                if (d, epoch) not in perms:
                    perms = {k: v for k, v in perms.items() if k[0] != d}
                    perms[(d, epoch)] = np.random.default_rng([self.seed, d, epoch]).permutation(n)
                lo = (j * self.world_size + self.rank) * b
                yield [(d, int(i)) for i in perms[(d, epoch)][lo : lo + b]]
            step += 1


class _Rows(Dataset):
    """Maps a (dataset index, row index) key to itself; the collator reads the tables."""

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, int]:
        return key

    def __len__(self) -> int:  # pragma: no cover - never asked with a batch sampler
        raise TypeError("indexed through the batch sampler only")


class PairCollator:
    """[(dataset, row)] of one dataset -> tokenised query/document/negatives + teacher vectors.

    Output (B rows, K negatives, Dt teacher dim): ``query`` / ``document`` {input_ids, attention_mask}
    (B, L); ``negatives`` the same for (B*K) texts or None; ``teacher_query`` / ``teacher_document``
    (B, Dt) or None; ``scores`` (B,) or None; ``query_ids`` / ``document_ids`` (B,) int64;
    ``dataset``: the dataset name.
    """

    def __init__(self, encoder: StudentEncoder, tables: Sequence[PairTable]) -> None:
        self.encoder, self.tables = encoder, tables

    def __call__(self, keys: list[tuple[int, int]]) -> dict:
        table = self.tables[keys[0][0]]
        rows = [r for _, r in keys]
        spec, enc = table.spec, self.encoder
        queries = [table.queries[r] for r in rows]
        documents = [table.documents[r] for r in rows]
        out = {
            "dataset": spec.name,
            "query": enc.tokenize(queries, "query", max_length=spec.query_max_length),
            "document": enc.tokenize(documents, "document", max_length=spec.document_max_length),
            "negatives": None,
            "teacher_query": None,
            "teacher_document": None,
            "scores": None,
            "query_ids": torch.tensor([text_id(q) for q in queries]),
            "document_ids": torch.tensor([text_id(d) for d in documents]),
        }
        negs = [table.negatives[r] for r in rows] if table.negatives else []
        if negs and all(negs):
            k = min(len(n) for n in negs)
            flat = [n for row in negs for n in row[:k]]
            out["negatives"] = enc.tokenize(flat, "document", max_length=spec.document_max_length)
            out["negatives_per_query"] = k
        if table.teacher_query is not None:
            out["teacher_query"] = torch.from_numpy(table.teacher_query[rows])
            out["teacher_document"] = torch.from_numpy(table.teacher_document[rows])
        if table.scores and all(s is not None for s in (table.scores[r] for r in rows)):
            out["scores"] = torch.tensor([table.scores[r] for r in rows], dtype=torch.float32)
        return out


@dataclass
class DevSet:
    """Held-out (query, document) pairs for the in-training check, with teacher vectors."""

    queries: list[str]
    documents: list[str]
    teacher_query: np.ndarray | None = None
    teacher_document: np.ndarray | None = None


class PairDataModule(L.LightningDataModule):
    """The training mix (one dataset per step) and a small dev slice for in-training checks.

    Args:
        datasets: the mix, as ``DatasetSpec`` kwargs.
        encoder: the student (its tokenizer and prompts are used by the collator).
        teacher: the frozen teacher, or None when no loss or check needs teacher vectors.
        query_instruction / document_instruction: the teacher's prefixes for each side.
        dev_datasets / dev_pairs: corpora whose dev split gives ``dev_pairs`` pairs each.
        split_seed: the data split's seed (fixed across training seeds, so evaluation never moves).
        seed: the batch stream's seed.
        hard_negatives: ``MiningConfig`` kwargs: mine negatives for every dataset without its own
            (None: no mining).
        max_rows_cap: a cap on every dataset's rows on top of its own ``max_rows`` (smoke runs).
    """

    def __init__(
        self,
        datasets: Sequence[dict],
        encoder: StudentEncoder,
        teacher: Teacher | None = None,
        query_instruction: str = "",
        document_instruction: str = "",
        dev_datasets: Sequence[str] = (),
        dev_pairs: int = 100,
        split_seed: int = 0,
        seed: int = 0,
        num_workers: int = 0,
        hard_negatives: dict | None = None,
        max_rows_cap: int | None = None,
    ) -> None:
        super().__init__()
        self.specs = [DatasetSpec(**d) for d in datasets]
        if max_rows_cap is not None:
            for spec in self.specs:
                spec.max_rows = min(spec.max_rows or max_rows_cap, max_rows_cap)
        self.mining = None
        if hard_negatives is not None:
            mining = dict(hard_negatives)
            if "rank_range" in mining:
                mining["rank_range"] = tuple(mining["rank_range"])
            self.mining = MiningConfig(**mining)
        self.encoder, self.teacher = encoder, teacher
        self.query_instruction, self.document_instruction = query_instruction, document_instruction
        self.dev_datasets, self.dev_pairs = list(dev_datasets), dev_pairs
        self.split_seed, self.seed, self.num_workers = split_seed, seed, num_workers
        self.tables: list[PairTable] = []
        self.dev: DevSet | None = None

    def teacher_caches(self) -> tuple[TeacherCache, TeacherCache] | None:
        if self.teacher is None:
            return None
        query_cache = TeacherCache(self.teacher, self.query_instruction)
        if self.document_instruction == self.query_instruction:
            return query_cache, query_cache
        return query_cache, TeacherCache(self.teacher, self.document_instruction)

    def setup(self, stage: str | None = None) -> None:
        if self.tables:
            return
        self.tables = [load_pair_table(s, "train", self.split_seed, self.seed) for s in self.specs]
        if self.mining is not None:
            for table in self.tables:
                if not any(table.negatives):
                    attach_hard_negatives(table, self.encoder, self.mining)
        dev_q, dev_d = [], []
        for name in self.dev_datasets:
            table = load_pair_table(DatasetSpec(name, max_rows=self.dev_pairs), "dev", self.split_seed, 0)
            dev_q += table.queries
            dev_d += table.documents
        self.dev = DevSet(dev_q, dev_d) if dev_q else None
        caches = self.teacher_caches()
        if caches is not None:
            attach_teacher(self.tables, *caches)
            if self.dev is not None:
                self.dev.teacher_query = caches[0].get(self.dev.queries)
                self.dev.teacher_document = caches[1].get(self.dev.documents)
        log.info("training mix: %s", ", ".join(f"{t.spec.name}={len(t)}" for t in self.tables))

    def _start_step(self) -> int:
        trainer = self.trainer
        return 0 if trainer is None else trainer.global_step * trainer.accumulate_grad_batches

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sizes = [len(t) for t in self.tables]
        weights = [s.weight if s.weight is not None else n for s, n in zip(self.specs, sizes, strict=True)]
        sampler = OneDatasetPerStep(
            sizes,
            [s.batch_size for s in self.specs],
            weights,
            self.seed,
            rank,
            world,
            self._start_step,
            [s.name for s in self.specs],
        )
        # its own generator: creating the iterator must not draw from the global RNG (resume == unbroken run)
        return DataLoader(
            _Rows(),
            batch_sampler=sampler,
            collate_fn=PairCollator(self.encoder, self.tables),
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader:
        """Dev pairs in fixed batches of 64: {query, document} tokens + row positions."""
        if self.dev is None:
            return DataLoader([])
        dev, enc, n = self.dev, self.encoder, len(self.dev.queries)
        spec = self.specs[0]

        def collate(idx: list[int]) -> dict:
            return {
                "rows": torch.tensor(idx),
                "query": enc.tokenize(
                    [dev.queries[i] for i in idx], "query", max_length=spec.query_max_length
                ),
                "document": enc.tokenize(
                    [dev.documents[i] for i in idx], "document", max_length=spec.document_max_length
                ),
            }

        return DataLoader(list(range(n)), batch_size=64, collate_fn=collate, generator=torch.Generator())
