"""The LightningDataModule of training: the dataset mix, the batch stream and a dev slice.

    corpus train split (schema rows) --load_pair_table--> PairTable + teacher vectors (TeacherCache)
      --OneDatasetPerStep--> [(dataset, row) of one dataset] --PairCollator--> tensors for the module

``data.datasets`` maps each dataset's name to its ``DatasetSpec`` settings; the mapping's order is the
sampler's dataset order, and a dataset set to null is left out of the mix (so a data config can start
from another and drop some of its datasets).

Texts-only datasets (``texts_only: true``: single texts for distillation, ``load_pair_table``) are
loaded after every other dataset, in mix order, and each drops the texts an earlier-loaded table already
has (on either side: they are distilled there already). ``held_out`` names corpora (with their split
fractions) whose dev and test texts no table may hold (``jina5.data.splits.held_out_texts``): the
evaluation suite's corpora, so that text shared across corpora cannot leak either.

``setup`` loads every table first: a dataset with no usable row (an empty source, every row dropped, no
pair left) raises ``EmptySourceError`` naming it there, and one with fewer rows than its
``batch_size x world_size`` raises ValueError naming it, its rows, batch size and world size and the ways
out (``check_batch_sizes``; ``allow_small: true`` repeats its rows instead), both before mining, the
teacher cache and the warm start.

Hub data (``source: hf:<name>[:<config>]:<split>``) is read lazily: the first ``max_rows`` rows of the
memory-mapped Arrow split, or of the stream with ``streaming: true`` (``jina5.data.sources``), and under
DDP each rank reads only its share of them (rows ``rank, rank + world, ...``) and batches it itself
(``OneDatasetPerStep``'s rank-local tables); the ranks' row counts are summed for the sampling weights
and the size check. Bundled corpora and local files are read whole by every rank and sliced by rank. Rank 0
writes ``data_manifest.json`` (``MANIFEST_FILE``) to ``manifest_dir`` (the run directory in training):
what each dataset of the mix was read from and how, its rows, drops, weight, sampling probability,
batch size and lengths, and the history of the data each start of the run trained on (a resumed run's
changed data is refused there: ``jina5.data.manifest``).

The DataLoader collates (tokenises) in ``num_workers`` worker processes (0: in the training process) and
pins memory when the trainer runs on CUDA (``pin_memory: auto``). The batch sampler stays in the training
process and collation is a pure function of the batch's keys, so the workers never change the batches.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from jina5.data.collate import PairCollator
from jina5.data.hard_negatives import MiningConfig
from jina5.data.manifest import (
    MANIFEST_FILE,
    DataChangedError,
    inputs_digest,
    mix_manifest,
    record_manifest,
    table_fingerprint,
)
from jina5.data.mix import load_mix_tables, mix_specs
from jina5.data.pairs import (
    DatasetSpec,
    PairTable,
    attach_hard_negatives,
    attach_teacher,
)
from jina5.data.sampler import OneDatasetPerStep, check_batch_sizes, check_rank_shares
from jina5.data.splits import CorpusSplits
from jina5.data.teacher_vectors import fill_teacher_caches
from jina5.data.text_pairs import TextPairs, distillation_sample, load_dev_pairs
from jina5.model.encoder import Encoder
from jina5.model.placement import run_device, trainer_setup_forwards
from jina5.model.text_budget import report_long_texts
from jina5.teacher.cache import Teacher, TeacherCache

log = logging.getLogger(__name__)


class _Rows(Dataset):
    """Maps a (dataset index, row index) key to itself; the collator reads the tables."""

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, int]:
        return key

    def __len__(self) -> int:  # pragma: no cover - never asked with a batch sampler
        raise TypeError("indexed through the batch sampler only")


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
        sample_seed: the seed of the rows a dataset keeps (its ``max_rows`` draw, its label triplets); None:
            ``seed``. A fixed value gives every training seed of a sweep the same sample, so seeds differ
            in order, dropout and initialisation alone and share one teacher cache fill.
        hard_negatives: ``MiningConfig`` kwargs: mine negatives for every dataset without its own
            (None: no mining).
        max_rows_cap: a cap on every dataset's rows on top of its own ``max_rows`` (smoke runs).
        batch_size_cap: a cap on every dataset's batch size (smoke runs: conf/debug/smoke.yaml; the
            shipped data configs leave it out, so their runs' config.yaml stays as it was).
        held_out: corpus -> split fractions (None: the default 0.8/0.1/0.1) whose dev and test texts no
            training table may hold; None: each table relies on its own corpus's split alone.
        num_workers: DataLoader worker processes that collate (tokenise) batches; 0: the training process.
        pin_memory: pin the batches' host memory; "auto": when the trainer's device is CUDA.
        manifest_dir: where rank 0 writes ``data_manifest.json`` at setup (None: nowhere; training sets
            it to the run directory, ``jina5.train``).
        language: the ISO 639 code of the texts of every source dataset (``hf:``, a file) that names no
            ``language`` of its own and whose rows carry none: the data manifest's and the model card's
            languages (``jina5.data.languages``); "": unknown.

    Training also sets ``resume_step`` (the step a resumed run restarts at; None: a fresh run) and
    ``accept_changed_data`` (the config's key) before fitting: a resumed run's setup refuses data that
    changed since the steps before (``jina5.data.manifest.record_manifest``) and appends to the manifest's
    history.

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
        sample_seed: int | None = None,
        num_workers: int = 0,
        hard_negatives: dict | None = None,
        max_rows_cap: int | None = None,
        batch_size_cap: int | None = None,
        held_out: Mapping[str, Sequence[float] | None] | None = None,
        pin_memory: bool | str = "auto",
        manifest_dir: str | None = None,
        language: str = "",
    ) -> None:
        super().__init__()
        self.specs = mix_specs(datasets, max_rows_cap, batch_size_cap, language)
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
        self.sample_seed = seed if sample_seed is None else sample_seed
        if pin_memory not in (True, False, "auto"):
            raise ValueError(f"data.pin_memory must be true, false or auto, got {pin_memory!r}")
        self.pin_memory, self.manifest_dir = pin_memory, manifest_dir
        self.resume_step: int | None = None
        self.accept_changed_data = False
        self.tables: list[PairTable] = []
        self.rows_all_ranks: list[int] = []  # each table's rows summed over the ranks holding a share
        self.dev: TextPairs | None = None

    def teacher_caches(self, read_only: bool = False) -> tuple[TeacherCache, TeacherCache] | None:
        """(query cache, document cache): one object when both sides share the instruction."""
        if self.teacher is None:
            return None
        query_cache = TeacherCache(self.teacher, self.query_instruction, read_only=read_only)
        if self.document_instruction == self.query_instruction:
            return query_cache, query_cache
        return query_cache, TeacherCache(self.teacher, self.document_instruction, read_only=read_only)

    def teacher_texts(self, rank_local: bool = False) -> list[tuple[int, list[str]]]:
        """What the teacher embeds, in the order ``setup`` fills it: (side, texts) with side 0 the query
        cache and 1 the document cache; the tables' queries, their documents, then the dev pairs'.
        ``python -m jina5.teacher`` pre-computes exactly these (``jina5.teacher.precompute``).
        ``rank_local``: the texts of the tables this rank read a share of (an ``hf:`` source under
        several ranks: each rank holds other rows), else those of the tables every rank holds whole."""
        tables = [t for t in self.tables if t.rank_local == rank_local]
        steps = [
            (0, [q for t in tables for q in t.queries]),
            (1, [d for t in tables for d in t.documents]),
        ]
        if self.dev is not None and not rank_local:
            steps += [(0, self.dev.queries), (1, self.dev.documents)]
        return steps

    def load_dev(self) -> TextPairs | None:
        """The dev pairs: ``dev_pairs`` pairs of each ``dev_datasets`` corpus's dev split."""
        return load_dev_pairs(self.dev_datasets, self.dev_pairs, self.split_seed)

    def attach_teacher_vectors(self) -> None:
        """Fill the teacher caches (``teacher_texts``) and attach lazy views to the tables and dev pairs.

        Under several ranks only global rank 0 fills, exactly as a single process would (the same
        texts, order and chunks, so the same vectors); the others wait at a barrier, then open the
        store read-only (a text still missing there is an error naming ``python -m jina5.teacher``).
        The texts of rank-local tables (an ``hf:`` source read in shares, one per rank) are then filled
        by each rank for its own share, and rank 0 indexes every rank's parts.
        On an accelerator every rank that embeds (rank 0; with rank-local tables, every rank) moves the
        teacher to its own device for the fill and back to the CPU after, and every rank resolves the
        precision policy and the fingerprint for that device (``Teacher.place``): the vectors are
        stored under the fingerprint of the device and precision that computed them.
        A store too large to fill inside the process group's barrier timeout is pre-computed first:
        ``python -m jina5.teacher <the training overrides>`` (sharded over ranks)."""
        trainer = self.trainer
        rank0 = trainer is None or trainer.is_global_zero
        device = run_device(trainer)
        several = self._rank_world()[1] > 1
        rank_local = several and any(t.rank_local for t in self.tables)  # the same on every rank
        fills = rank0 or rank_local  # rank 0 embeds the shared texts, every rank its rank-local share
        if device.type != "cpu":  # every rank resolves for the device (the store's fingerprint) ...
            self.teacher.place(device, move_weights=fills)  # ... and a rank that embeds moves there
        strategy = trainer.strategy if several else None
        caches = fill_teacher_caches(self.teacher_caches, self.teacher_texts, strategy, rank0, rank_local)
        if device.type != "cpu" and fills:
            self.teacher.encoder.to("cpu")  # training needs only the stored vectors
            if device.type == "cuda":
                torch.cuda.empty_cache()
        attach_teacher(self.tables, *caches)
        if self.dev is not None:
            self.dev.teacher_query = caches[0].get(self.dev.queries)
            self.dev.teacher_document = caches[1].get(self.dev.documents)

    def report_long_texts(self) -> None:
        """Warn, per dataset and side, of the texts longer than the character budget of the student's
        (the side's max length) and the teacher's max length: the tokenizers get them cut
        (``jina5.model.text_budget``)."""
        teacher = self.teacher.encoder if self.teacher is not None else None
        for table in self.tables:
            spec = table.spec
            negatives = [n for row in table.negatives for n in row or ()]
            sides = [("documents", [*table.documents, *negatives], spec.document_max_length)]
            if not table.texts_only:
                sides.insert(0, ("queries", table.queries, spec.query_max_length))
            for side, texts, student_length in sides:
                for who, encoder in (("student", self.encoder), ("teacher", teacher)):
                    if encoder is not None:
                        max_length = student_length if who == "student" else encoder.max_length
                        budget = encoder.char_budget(max_length)
                        report_long_texts(f"dataset {spec.name!r} {side} ({who})", texts, budget, max_length)

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

    def load_tables(
        self, specs: Sequence[DatasetSpec] | None = None, rank_world: tuple[int, int] | None = None
    ) -> list[PairTable]:
        """Every dataset's table (of ``specs``, default the mix), in mix order: pair tables first, then
        texts-only tables, each without the texts an earlier-loaded table has (normalised), none holding a
        held-out text; a source read in shares reads the share of ``rank_world`` (default this rank's)."""
        specs = self.specs if specs is None else specs
        splits = CorpusSplits(self.split_seed)  # each corpus parsed and split once for all its uses
        held_out = self.held_out_texts(splits)
        texts_only = [s for s in specs if s.texts_only]
        if texts_only and not self.held_out:
            log.warning(
                "texts-only datasets %s with no data.held_out: only their own corpus's split keeps "
                "dev/test text out (set held_out to the evaluated corpora, as conf/data/stage1_distill.yaml)",
                [s.name for s in texts_only],
            )
        shard = functools.partial(self._shard, rank_world=rank_world)
        return load_mix_tables(specs, self.split_seed, self.sample_seed, held_out, splits, shard)

    def fingerprint(self, names: Collection[str], world: int = 1) -> dict[str, dict]:
        """Rank 0's fingerprint (``jina5.data.manifest.table_fingerprint``) of the datasets ``names`` of the
        mix, loaded as ``setup`` loads them under ``world`` ranks (an ``hf:`` source: rank 0's share),
        without setting up (no model, teacher or process group): what a finished run's data is checked
        against before it is skipped (``jina5.runs.data_identity``)."""
        tables = self.load_tables([s for s in self.specs if s.name in names], (0, world))
        return {t.spec.name: table_fingerprint(t) for t in tables}

    def inputs_digest(self) -> str | None:
        """What the mix is read from, hashed (``jina5.data.manifest.inputs_digest``)."""
        return inputs_digest(self.specs)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _shard(self, spec: DatasetSpec, rank_world: tuple[int, int] | None = None) -> tuple[int, int]:
        """(rank, world) for a source each rank reads a share of (hf:), else (0, 1): the whole table;
        ``rank_world`` default this process's."""
        return (rank_world or self._rank_world()) if (spec.source or "").startswith("hf:") else (0, 1)

    def _sum_over_ranks(self, counts: list[int]) -> list[int]:
        """Element-wise sum of ``counts`` over the ranks (a collective: every rank calls it in setup)."""
        strategy = self.trainer.strategy
        total = strategy.reduce(torch.tensor(counts, device=strategy.root_device), reduce_op="sum")
        return [int(x) for x in total.tolist()]

    def _load_and_count(self) -> tuple[list[PairTable], list[int], list[int]]:
        """The tables, each one's rows over all ranks, and for each on how many ranks it holds fewer rows
        than its batch size (a rank-local table without ``allow_small``; 0 for the others).

        With a rank-local table under DDP this is one collective (``_sum_over_ranks``) that every rank
        reaches even when its own loading fails, so that a rank's error stops every rank (no rank waits
        in a later collective for one that has died)."""
        world = self._rank_world()[1]
        tables: list[PairTable] | None = None
        if world == 1 or not any(self._shard(s)[1] > 1 for s in self.specs):
            tables = self.load_tables()
            return tables, [len(t) for t in tables], [0] * len(tables)
        failed: Exception | None = None
        try:
            tables = self.load_tables()
        except Exception as err:  # raised below, once every rank knows that one failed
            failed = err
        local = [len(t) if t.rank_local else 0 for t in tables or []] or [0] * len(self.specs)
        short = [
            int(t.rank_local and len(t) < t.spec.batch_size and not t.spec.allow_small) for t in tables or []
        ] or [0] * len(self.specs)
        summed = self._sum_over_ranks([int(failed is not None), *local, *short])
        if failed is not None:
            raise failed
        if summed[0]:
            raise RuntimeError(
                f"{summed[0]} other rank(s) could not load their share of the data mix: see their error"
            )
        n = len(tables)
        rows = [summed[1 + i] if t.rank_local else len(t) for i, t in enumerate(tables)]
        return tables, rows, summed[1 + n :]

    def _check_sizes(self, tables: Sequence[PairTable], rows: Sequence[int], short_on: Sequence[int]) -> None:
        """``check_batch_sizes`` on each table's ``rows`` over all ranks; then a rank-local table must hold
        a batch on every rank (``short_on``: on how many ranks it does not)."""
        world = self._rank_world()[1]
        names, batch_sizes = [t.spec.name for t in tables], [t.spec.batch_size for t in tables]
        check_batch_sizes(names, rows, batch_sizes, world, [t.spec.allow_small for t in tables])
        check_rank_shares(names, rows, batch_sizes, world, short_on)

    def setup(self, stage: str | None = None) -> None:
        if self.tables:
            return
        tables, rows, short_on = self._load_and_count()
        self._check_sizes(tables, rows, short_on)
        self.tables, self.rows_all_ranks = tables, rows
        self.report_long_texts()
        if self.manifest_dir is not None:
            self._record_manifest()
        if self.mining is not None:
            for table in self.tables:
                if not table.texts_only and not any(table.negatives):
                    # on the run's accelerator, under its precision (before Lightning moves the model)
                    with trainer_setup_forwards(self.encoder, self.trainer):
                        attach_hard_negatives(table, self.encoder, self.mining)
        self.dev = self.load_dev()
        if self.teacher is not None:
            self.attach_teacher_vectors()
        log.info("training mix: %s", ", ".join(f"{t.spec.name}={len(t)}" for t in self.tables))

    def _record_manifest(self) -> None:
        """Rank 0 records the mix in ``manifest_dir`` (``record_manifest``: a resumed run refuses changed
        data there); under several ranks its verdict is summed over them (one collective), so a refusal
        stops every rank instead of leaving them waiting for rank 0 in a later collective."""
        rank, world = self._rank_world()
        refused: DataChangedError | None = None
        if rank == 0:
            path = Path(self.manifest_dir) / MANIFEST_FILE
            try:
                record_manifest(
                    path, self.manifest(), self.resume_step, self.accept_changed_data, self.inputs_digest()
                )
            except DataChangedError as err:  # raised below, once every rank knows
                refused = err
        if world > 1 and self._sum_over_ranks([int(refused is not None)])[0] and refused is None:
            raise RuntimeError(f"rank 0 refused the data of {self.manifest_dir}: see its error")
        if refused is not None:
            raise refused

    def distillation_sample(self, n_texts: int) -> TextPairs | None:
        """``k = min(n_texts // 2, rows)`` training pairs (so ``2k`` texts) with their teacher vectors
        (``jina5.data.text_pairs.distillation_sample``)."""
        return distillation_sample(self.tables, n_texts)

    def _start_step(self) -> int:
        trainer = self.trainer
        return 0 if trainer is None else trainer.global_step * trainer.accumulate_grad_batches

    def sampling_weights(self) -> list[float]:
        """Each dataset's configured weight, else its rows over all ranks (a pair table) or half of them
        (a texts-only table: half its texts)."""
        return [
            s.weight if s.weight is not None else (n / 2 if t.texts_only else n)
            for s, t, n in zip(self.specs, self.tables, self.rows_all_ranks, strict=True)
        ]

    def manifest(self) -> dict[str, Any]:
        """The mix as set up: ``data_manifest.json`` (``jina5.data.manifest.mix_manifest``)."""
        rank, world = self._rank_world()
        weights = self.sampling_weights()
        return mix_manifest(
            self.tables,
            self.rows_all_ranks,
            weights,
            rank,
            world,
            self.seed,
            self.split_seed,
            self.sample_seed,
        )

    def _pin(self) -> bool:
        if self.pin_memory != "auto":
            return bool(self.pin_memory)
        strategy = getattr(self.trainer, "strategy", None)
        return strategy is not None and strategy.root_device.type == "cuda"

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        sampler = OneDatasetPerStep(
            [len(t) for t in self.tables],
            [s.batch_size for s in self.specs],
            self.sampling_weights(),
            self.seed,
            rank,
            world,
            self._start_step,
            [s.name for s in self.specs],
            [t.rank_local for t in self.tables],
            [s.allow_small for s in self.specs],
        )
        # its own generator: creating the iterator must not draw from the global RNG (resume == unbroken run);
        # workers only collate the keys the sampler (in this process) hands them, so they never change a batch
        return DataLoader(
            _Rows(),
            batch_sampler=sampler,
            collate_fn=PairCollator(self.encoder, self.tables),
            num_workers=self.num_workers,
            pin_memory=self._pin(),
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
