"""The LightningDataModule of training: the dataset mix, the batch stream and a dev slice.

    corpus train split (schema rows) --load_pair_table--> PairTable + teacher vectors (TeacherCache)
      --OneDatasetPerStep--> [(dataset, row) of one dataset] --PairCollator--> tensors for the module

``data.datasets`` maps each dataset's name to its ``DatasetSpec`` settings; the mapping's order is the
sampler's dataset order, and a dataset set to null is left out of the mix (so a data config can start
from another and drop some of its datasets).

Texts-only datasets (``texts_only: true``: single texts for distillation, ``load_text_table``) are
loaded after every other dataset, in mix order, and each drops the texts an earlier-loaded table already
has (on either side: they are distilled there already). ``held_out`` names corpora (with their split
fractions) whose dev and test texts no table may hold (``jina5.data.splits.held_out_texts``): the
evaluation suite's corpora, so that text shared across corpora cannot leak either.

``setup`` loads every table first: a dataset with no usable row (an empty source, every row dropped, no
pair left) raises ``EmptySourceError`` naming it there, and one with fewer rows than its
``batch_size x world_size`` raises ValueError naming it (``check_batch_sizes``), both before mining, the
teacher cache and the warm start.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from jina5.data.collate import PairCollator
from jina5.data.hard_negatives import MiningConfig
from jina5.data.pairs import (
    DatasetSpec,
    PairTable,
    attach_hard_negatives,
    attach_teacher,
    load_pair_table,
    load_text_table,
)
from jina5.data.sampler import OneDatasetPerStep, check_batch_sizes
from jina5.data.schema import normalise_text
from jina5.data.splits import CorpusSplits
from jina5.encoder import Encoder
from jina5.teacher import Teacher, TeacherCache

log = logging.getLogger(__name__)


def mix_specs(
    datasets: Mapping[str, Mapping | None], max_rows_cap: int | None = None, batch_size_cap: int | None = None
) -> list[DatasetSpec]:
    """The mix as ``DatasetSpec`` objects, in mapping order: ``DatasetSpec(name, **settings)`` for each
    ``name: settings`` whose settings are not None, with ``max_rows = min(max_rows, max_rows_cap)`` and
    ``batch_size = min(batch_size, batch_size_cap)`` (None: no cap)."""
    if not isinstance(datasets, Mapping):
        raise TypeError(
            f"data.datasets must map each dataset name to its settings ({{news: {{batch_size: 32}}, ...}}), "
            f"got {type(datasets).__name__}"
        )
    specs = []
    for name, settings in datasets.items():
        if settings is None:
            continue
        if "name" in settings:
            raise ValueError(f"data.datasets.{name}: the key is the name; drop 'name: {settings['name']}'")
        specs.append(DatasetSpec(name, **settings))
    if max_rows_cap is not None:
        for spec in specs:
            spec.max_rows = min(spec.max_rows or max_rows_cap, max_rows_cap)
    if batch_size_cap is not None:
        for spec in specs:
            spec.batch_size = min(spec.batch_size, batch_size_cap)
    return specs


class _Rows(Dataset):
    """Maps a (dataset index, row index) key to itself; the collator reads the tables."""

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, int]:
        return key

    def __len__(self) -> int:  # pragma: no cover - never asked with a batch sampler
        raise TypeError("indexed through the batch sampler only")


@dataclass
class TextPairs:
    """k (query, document) pairs with their cached teacher vectors: the dev slice of the in-training
    check, and the sample the distillation projection is fitted on."""

    queries: list[str]  # k texts, encoded with the query prompt
    documents: list[str]  # their k documents, encoded with the document prompt
    teacher_query: np.ndarray | None = None  # (k, Dt) float32; None without a teacher
    teacher_document: np.ndarray | None = None  # (k, Dt) float32


class PairDataModule(L.LightningDataModule):
    """The training mix (one dataset per step) and a small dev slice for in-training checks.

    Args:
        datasets: the mix: dataset name -> ``DatasetSpec`` settings, in sampling order; a None entry is
            left out (``mix_specs``).
        encoder: the student (its tokenizer and prompts are used by the collator).
        teacher: the frozen teacher, or None when no loss or check needs teacher vectors.
        query_instruction / document_instruction: the teacher's prefixes for each side.
        dev_datasets / dev_pairs: corpora whose dev split gives ``dev_pairs`` pairs each.
        split_seed: the data split's seed (fixed across training seeds, so evaluation never moves).
        seed: the batch stream's seed.
        hard_negatives: ``MiningConfig`` kwargs: mine negatives for every dataset without its own
            (None: no mining).
        max_rows_cap: a cap on every dataset's rows on top of its own ``max_rows`` (smoke runs).
        batch_size_cap: a cap on every dataset's batch size (smoke runs: jina5/conf/debug/smoke.yaml; the
            shipped data configs leave it out, so their runs' config.yaml stays as it was).
        held_out: corpus -> split fractions (None: the default 0.8/0.1/0.1) whose dev and test texts no
            training table may hold; None: each table relies on its own corpus's split alone.

    A dataset's sampling weight (``DatasetSpec.weight``) defaults to its rows for a pair dataset and
    half its texts for a texts-only one: proportional to the texts a pass distils (a pair row has two),
    so with texts-only batches twice a pair batch's size every text of the mix is drawn equally often.
    """

    def __init__(
        self,
        datasets: Mapping[str, Mapping | None],
        encoder: Encoder,
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
        batch_size_cap: int | None = None,
        held_out: Mapping[str, Sequence[float] | None] | None = None,
    ) -> None:
        super().__init__()
        self.specs = mix_specs(datasets, max_rows_cap, batch_size_cap)
        self.held_out = {str(k): (None if v is None else tuple(v)) for k, v in (held_out or {}).items()}
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
        self.dev: TextPairs | None = None

    def teacher_caches(self, read_only: bool = False) -> tuple[TeacherCache, TeacherCache] | None:
        """(query cache, document cache): one object when both sides share the instruction."""
        if self.teacher is None:
            return None
        query_cache = TeacherCache(self.teacher, self.query_instruction, read_only=read_only)
        if self.document_instruction == self.query_instruction:
            return query_cache, query_cache
        return query_cache, TeacherCache(self.teacher, self.document_instruction, read_only=read_only)

    def teacher_texts(self) -> list[tuple[int, list[str]]]:
        """What the teacher embeds, in the order ``setup`` fills it: (side, texts) with side 0 the query
        cache and 1 the document cache; the tables' queries, their documents, then the dev pairs'.
        ``python -m jina5.teacher`` pre-computes exactly these (``jina5.teacher_precompute``)."""
        steps = [
            (0, [q for t in self.tables for q in t.queries]),
            (1, [d for t in self.tables for d in t.documents]),
        ]
        if self.dev is not None:
            steps += [(0, self.dev.queries), (1, self.dev.documents)]
        return steps

    def load_dev(self) -> TextPairs | None:
        """The dev pairs: ``dev_pairs`` pairs of each ``dev_datasets`` corpus's dev split."""
        dev_q, dev_d = [], []
        for name in self.dev_datasets:
            table = load_pair_table(DatasetSpec(name, max_rows=self.dev_pairs), "dev", self.split_seed, 0)
            dev_q += table.queries
            dev_d += table.documents
        return TextPairs(dev_q, dev_d) if dev_q else None

    def attach_teacher_vectors(self) -> None:
        """Fill the teacher caches (``teacher_texts``) and attach lazy views to the tables and dev pairs.

        Under several ranks only global rank 0 fills, exactly as a single process would (the same
        texts, order and chunks, so the same vectors); the others wait at a barrier, then open the
        store read-only (a text still missing there is an error naming ``python -m jina5.teacher``).
        On a CUDA trainer the filling rank moves the teacher to its device for the fill and back to
        the CPU after, every rank resolving the precision policy for CUDA (the store's fingerprint).
        A store too large to fill inside the process group's barrier timeout is pre-computed first:
        ``python -m jina5.teacher <the training overrides>`` (sharded over ranks)."""
        trainer = self.trainer
        rank0 = trainer is None or trainer.is_global_zero
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        if device.type == "cuda":
            self.teacher.place(device, move_weights=rank0)
        if not rank0:
            trainer.strategy.barrier("teacher_store_filled")
        caches = self.teacher_caches(read_only=not rank0)
        for side, texts in self.teacher_texts():
            caches[side].fill(texts)
        if rank0 and self._world_size() > 1:
            for cache in dict.fromkeys(caches):
                cache.write_index()
            trainer.strategy.barrier("teacher_store_filled")
        if device.type == "cuda" and rank0:
            self.teacher.encoder.to("cpu")  # training needs only the stored vectors
            torch.cuda.empty_cache()
        attach_teacher(self.tables, *caches)
        if self.dev is not None:
            self.dev.teacher_query = caches[0].get(self.dev.queries)
            self.dev.teacher_document = caches[1].get(self.dev.documents)

    def held_out_texts(self, splits: CorpusSplits | None = None) -> set[str]:
        """The normalised dev and test texts of every ``held_out`` corpus (at ``split_seed``)."""
        splits = splits or CorpusSplits(self.split_seed)
        out: set[str] = set()
        for name, fractions in self.held_out.items():
            out |= splits.held_out_texts(name, fractions)
        return out

    def leave_out_texts_only(self) -> list[str]:
        """Drop the texts-only datasets from the mix (before ``setup``: their texts are never loaded nor
        cached); returns their names. For an objective that trains nothing on them (pure contrastive)."""
        if self.tables:
            raise RuntimeError("leave_out_texts_only must be called before setup()")
        dropped = [s.name for s in self.specs if s.texts_only]
        if dropped and len(dropped) == len(self.specs):
            raise ValueError(
                f"the mix holds only texts-only datasets {dropped}, and no loss of the objective with a "
                "nonzero weight trains on single texts (distill does): add a pair dataset or weight distill"
            )
        self.specs = [s for s in self.specs if not s.texts_only]
        return dropped

    def load_tables(self) -> list[PairTable]:
        """Every dataset's table, in mix order: pair tables first, then texts-only tables, each without
        the texts an earlier-loaded table has (normalised), none holding a held-out text."""
        splits = CorpusSplits(self.split_seed)  # each corpus parsed and split once for all its uses
        held_out = self.held_out_texts(splits)
        texts_only = [s for s in self.specs if s.texts_only]
        if texts_only and not self.held_out:
            log.warning(
                "texts-only datasets %s with no data.held_out: only their own corpus's split keeps "
                "dev/test text out (set held_out to the evaluated corpora, as jina5/conf/data/stage1_distill.yaml)",
                [s.name for s in texts_only],
            )
        tables: dict[int, PairTable] = {}
        for i, spec in enumerate(self.specs):
            if not spec.texts_only:
                tables[i] = load_pair_table(spec, "train", self.split_seed, self.seed, held_out, splits)
        if not texts_only:
            return [tables[i] for i in range(len(self.specs))]
        seen = {normalise_text(t) for table in tables.values() for t in (*table.queries, *table.documents)}
        for i, spec in enumerate(self.specs):
            if spec.texts_only:
                tables[i] = load_text_table(spec, "train", self.split_seed, self.seed, held_out, seen, splits)
                seen.update(normalise_text(t) for t in tables[i].documents)
        return [tables[i] for i in range(len(self.specs))]

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def setup(self, stage: str | None = None) -> None:
        if self.tables:
            return
        tables = self.load_tables()
        check_batch_sizes(
            [t.spec.name for t in tables],
            [len(t) for t in tables],
            [t.spec.batch_size for t in tables],
            self._world_size(),
        )
        self.tables = tables
        if self.mining is not None:
            for table in self.tables:
                if not table.texts_only and not any(table.negatives):
                    attach_hard_negatives(table, self.encoder, self.mining)
        self.dev = self.load_dev()
        if self.teacher is not None:
            self.attach_teacher_vectors()
        log.info("training mix: %s", ", ".join(f"{t.spec.name}={len(t)}" for t in self.tables))

    def distillation_sample(self, n_texts: int) -> TextPairs | None:
        """``k = min(n_texts // 2, rows)`` training pairs (so ``2k`` texts) with their teacher vectors.

        The rows are a draw without replacement from all (dataset, row) keys of the mix's pair tables
        (texts-only tables have no pairs), in mix order, by ``np.random.default_rng(0)``: the same for
        every training seed, and no global RNG is touched. None when the tables carry no teacher vectors
        (no teacher), are not set up, or are all texts-only.
        """
        tables = self.tables
        if not tables or tables[0].teacher_document is None:
            return None
        rng = np.random.default_rng(0)
        keys = [(t, r) for t, table in enumerate(tables) if not table.texts_only for r in range(len(table))]
        if not keys:
            return None
        picks = [keys[i] for i in rng.choice(len(keys), size=min(n_texts // 2, len(keys)), replace=False)]
        return TextPairs(
            queries=[tables[t].queries[r] for t, r in picks],
            documents=[tables[t].documents[r] for t, r in picks],
            teacher_query=np.stack([tables[t].teacher_query[r] for t, r in picks]),
            teacher_document=np.stack([tables[t].teacher_document[r] for t, r in picks]),
        )

    def _start_step(self) -> int:
        trainer = self.trainer
        return 0 if trainer is None else trainer.global_step * trainer.accumulate_grad_batches

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sizes = [len(t) for t in self.tables]
        weights = [
            s.weight if s.weight is not None else t.texts / 2
            for s, t in zip(self.specs, self.tables, strict=True)
        ]
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
        spec = next((s for s in self.specs if not s.texts_only), self.specs[0])

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
