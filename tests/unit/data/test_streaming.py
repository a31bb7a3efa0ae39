"""Hub data read lazily: Arrow and streamed ``hf:`` sources, row caps applied while reading, rank shards,
the small-dataset policy, the data manifest and DataLoader workers (``jina5.data.sources``,
``jina5.data.sampler``, ``jina5.data.datamodule``).

No network: a local directory of JSON lines is an ``hf:`` source (``hf:<dir>:train``), read by
``datasets.load_dataset`` through the same code path as a hub name. The reference rows come from reading
that file with ``json`` alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch

from jina5.data import sources
from jina5.data.datamodule import PairDataModule
from jina5.data.manifest import MANIFEST_FILE, manifest_fingerprint
from jina5.data.pairs import DatasetSpec, load_pair_table
from jina5.data.sampler import OneDatasetPerStep
from jina5.data.schema import dataset_stats
from jina5.data.sources import load_source
from jina5.model.encoder import Encoder
from jina5.model.tiny import tiny_model_and_tokenizer

COLUMNS = {"sentence1": "query", "sentence2": "document"}
N_ROWS = 60
BLANK = {7, 33}  # rows whose sentence2 is blank: dropped (and counted) as "empty document"


def _record(i: int) -> dict:
    return {
        "sentence1": f"question {i} about item {i * 7 % 13}",
        "sentence2": "" if i in BLANK else f"answer {i}. It explains item {i * 7 % 13} at length.",
        "extra": i,  # a column the mapping does not read
    }


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory) -> Path:
    """A local stand-in for a hub dataset: one JSON-lines file, split ``train``."""
    root = tmp_path_factory.mktemp("hub") / "pairs"
    root.mkdir()
    with (root / "train.jsonl").open("w") as f:
        for i in range(N_ROWS):
            f.write(json.dumps(_record(i)) + "\n")
    return root


def _reference(hub_dir: Path, cap: int | None, rank: int = 0, world: int = 1) -> list[tuple[str, str]]:
    """(query, document) of the rows an hf source with read cap ``cap`` keeps, by plain ``json``: the
    first ``cap`` records, rank's share (every world-th from rank), without a blank document."""
    records = [json.loads(line) for line in (hub_dir / "train.jsonl").read_text().splitlines()]
    records = records[: len(records) if cap is None else cap][rank::world]
    return [(r["sentence1"], r["sentence2"]) for r in records if r["sentence2"].strip()]


def _pairs(ds: datasets.Dataset) -> list[tuple[str, str]]:
    return list(zip(ds["query"], ds["document"], strict=True))


def _load(hub_dir: Path, **kwargs) -> datasets.Dataset:
    return load_source(
        f"hf:{hub_dir}:train", COLUMNS, task="retrieval", dataset="pairs", drop_incomplete=True, **kwargs
    )


# ------------------------------------------------------------------------------ reading: Arrow and streamed


@pytest.mark.parametrize("cap", [None, 1, 9, 25, N_ROWS + 5])
@pytest.mark.parametrize("streaming", [False, True])
def test_arrow_and_streamed_sources_give_the_plain_reading_of_the_first_rows(hub_dir, cap, streaming):
    ds = _load(hub_dir, max_rows=cap, streaming=streaming)
    assert _pairs(ds) == _reference(hub_dir, cap)
    stats = dataset_stats(ds)
    read = min(cap or N_ROWS, N_ROWS)
    assert stats["access"] == ("streaming" if streaming else "arrow")
    assert stats["read_rows"] == stats["raw_rows"] == read
    assert stats["filtered"] == (
        {"empty document": len(BLANK & set(range(read)))} if BLANK & set(range(read)) else {}
    )
    assert (stats["fingerprint"] is None) == streaming


def test_a_streamed_read_cap_never_asks_the_reader_for_more_rows(hub_dir, monkeypatch):
    yielded = []

    def rows():
        for i in range(10**6):  # a "hub" split far larger than the cap
            yielded.append(i)
            yield _record(i)

    def fake_load(name, config, split, cache_dir, streaming):
        assert streaming
        return datasets.IterableDataset.from_generator(rows)

    monkeypatch.setattr(sources.datasets, "load_dataset", fake_load)
    ds = load_source(
        "hf:big:train", COLUMNS, task="retrieval", max_rows=12, streaming=True, drop_incomplete=True
    )
    assert len(yielded) <= 12 and len(ds) == 12 - len(BLANK & set(range(12)))


def test_an_arrow_read_cap_turns_only_that_many_rows_into_python(hub_dir, monkeypatch):
    converted = []
    to_list = datasets.Dataset.to_list

    def spy(self):
        converted.append(len(self))
        return to_list(self)

    monkeypatch.setattr(datasets.Dataset, "to_list", spy)
    _load(hub_dir, max_rows=9)
    assert converted == [9]


def test_streaming_needs_an_hf_source(hub_dir):
    with pytest.raises(ValueError, match="streaming: true needs an hf: source"):
        DatasetSpec("x", source=str(hub_dir / "train.jsonl"), streaming=True)
    with pytest.raises(ValueError, match="for 'hf:' sources only"):
        load_source(str(hub_dir / "train.jsonl"), COLUMNS, task="retrieval", max_rows=3)


# ------------------------------------------------------------------------------ rank shards


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("cap", [None, 25])
def test_two_ranks_read_disjoint_shards_whose_union_is_the_whole(hub_dir, streaming, cap):
    whole = set(_pairs(_load(hub_dir, max_rows=cap)))
    shards = [_pairs(_load(hub_dir, max_rows=cap, streaming=streaming, shard=(r, 2))) for r in range(2)]
    assert shards == [_reference(hub_dir, cap, r, 2) for r in range(2)]
    assert set(shards[0]).isdisjoint(shards[1]) and set(shards[0]) | set(shards[1]) == whole
    assert all(len(s) > 0 for s in shards)


def test_a_pair_table_records_its_shard_and_only_an_hf_source_is_sharded(hub_dir):
    spec = DatasetSpec("pairs", source=f"hf:{hub_dir}:train", columns=COLUMNS, task="retrieval", max_rows=20)
    table = load_pair_table(spec, shard=(1, 2))
    assert table.rank_local and table.shard == (1, 2)
    assert list(zip(table.queries, table.documents, strict=True)) == _reference(hub_dir, 20, 1, 2)
    dm = PairDataModule({"bbc": {"max_rows": 8}, "pairs": {"source": f"hf:{hub_dir}:train"}}, encoder=None)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)
    assert [dm._shard(s) for s in dm.specs] == [(0, 1), (1, 2)]


# ------------------------------------------------------------------------------ the sampler


def _stream(sampler: OneDatasetPerStep, n: int) -> list[list[tuple[int, int]]]:
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_rank_local_tables_are_batched_by_each_rank_with_the_same_dataset_every_step():
    """Table 0 is shared (sliced by rank), table 1 rank-local (40 rows on rank 0, 38 on rank 1)."""
    streams = [
        _stream(OneDatasetPerStep([50, n], [5, 4], [50, 78], 3, r, 2, rank_local=[False, True]), 60)
        for r, n in enumerate([40, 38])
    ]
    assert [b[0][0] for b in streams[0]] == [b[0][0] for b in streams[1]]
    one_rank = [  # a rank-local table is the one-rank stream over the rank's own rows
        [b for b in _stream(OneDatasetPerStep([50, n], [5, 4], [50, 78], 3, 0, 1), 60) if b[0][0] == 1]
        for n in (40, 38)
    ]
    for r in range(2):
        assert [b for b in streams[r] if b[0][0] == 1] == one_rank[r]
    shared = [[b for b in s if b[0][0] == 0] for s in streams]
    for a, b in zip(*shared, strict=True):  # the shared table: disjoint rows across ranks at every step
        assert not {r for _, r in a} & {r for _, r in b}


def test_a_small_dataset_is_refused_naming_it_unless_allowed_then_its_rows_repeat():
    with pytest.raises(ValueError, match=r"tiny \(10 rows < 8 x 2\).*allow_small=true"):
        OneDatasetPerStep([100, 10], [8, 8], [1, 1], 0, 0, 2, names=["big", "tiny"])
    with pytest.raises(ValueError, match=r"tiny on rank 1 \(5 rows < 8 x 1\)"):
        OneDatasetPerStep([100, 5], [8, 8], [1, 1], 0, 1, 2, names=["big", "tiny"], rank_local=[False, True])
    ranks = [
        _stream(OneDatasetPerStep([100, 10], [8, 8], [1, 1], 0, r, 2, allow_small=[False, True]), 40)
        for r in range(2)
    ]
    small = [[[i for _, i in b] for b in s if b[0][0] == 1] for s in ranks]
    assert len(small[0]) >= 5
    # ranks' windows laid end to end = the passes' permutations laid end to end
    flat = [i for a, b in zip(*small, strict=True) for i in (*a, *b)]
    passes = np.concatenate(
        [np.random.default_rng([0, 1, e]).permutation(10) for e in range(len(flat) // 10 + 1)]
    )
    assert flat == passes[: len(flat)].tolist()
    resumed = OneDatasetPerStep(
        [100, 10], [8, 8], [1, 1], 0, 1, 2, start_step=lambda: 17, allow_small=[False, True]
    )
    assert _stream(resumed, 23) == ranks[1][17:]


# ------------------------------------------------------------------------------ the data module


class TwoRanks:
    """A stand-in for the trainer's strategy: the ranks' sums are this rank's values plus the other rank's,
    ``other``: [failed, rows of each dataset (rank-local ones), short of a batch (0/1) for each]."""

    def __init__(self, other: list[int]) -> None:
        self.other, self.root_device = other, torch.device("cpu")

    def reduce(self, tensor, reduce_op):
        assert reduce_op == "sum"
        return tensor + torch.tensor(self.other)


def test_a_too_small_hub_dataset_is_named_at_setup_with_its_rows_batch_and_world(hub_dir):
    mix = {
        "pairs": {"source": f"hf:{hub_dir}:train", "columns": COLUMNS, "task": "retrieval", "max_rows": 20}
    }
    mix["pairs"]["batch_size"] = 16
    dm = PairDataModule(mix, encoder=None)
    other = TwoRanks([0, 9, 1])  # rank 1: rows 1, 3, .., 19 but the blank 7
    dm.trainer = SimpleNamespace(world_size=2, global_rank=0, strategy=other)
    with pytest.raises(ValueError, match=re.escape("pairs (19 rows < 16 x 2)")) as err:
        dm.setup("fit")
    assert "batch_size" in str(err.value) and "=null" in str(err.value) and "allow_small" in str(err.value)


def test_a_rank_short_of_a_batch_or_failing_stops_every_rank(hub_dir):
    mix = {
        "pairs": {"source": f"hf:{hub_dir}:train", "columns": COLUMNS, "task": "retrieval", "max_rows": 20}
    }
    mix["pairs"]["batch_size"] = 8

    def setup(other: list[int]) -> None:
        dm = PairDataModule(mix, encoder=None)
        dm.trainer = SimpleNamespace(world_size=2, global_rank=0, strategy=TwoRanks(other))
        dm.setup("fit")

    setup([0, 9, 0])  # rank 0: 10 rows, rank 1: 9, each at least 8
    with pytest.raises(
        ValueError, match=re.escape("pairs (fewer than 8 rows on 1 of 2 ranks; 16 rows in all)")
    ):
        setup([0, 6, 1])  # rank 1 holds 6 (the sums pass 16 >= 8 x 2)
    with pytest.raises(RuntimeError, match="1 other rank"):
        setup([1, 0, 0])  # rank 1 failed to load: rank 0 stops too, after the same collective
    failing = PairDataModule({"pairs": {**mix["pairs"], "columns": {"nope": "query"}}}, encoder=None)
    calls = []
    failing.trainer = SimpleNamespace(world_size=2, global_rank=0, strategy=TwoRanks([0, 0, 0]))
    failing._sum_over_ranks = lambda counts: calls.append(counts) or counts
    with pytest.raises(ValueError, match="missing column 'nope'"):
        failing.setup("fit")
    assert calls == [[1, 0, 0]]  # its own error, raised after telling the other ranks


def test_the_manifest_records_the_mix_as_set_up(hub_dir, tmp_path):
    mix = {
        "bbc": {"max_rows": 40, "batch_size": 8},
        "pairs": {
            "source": f"hf:{hub_dir}:train",
            "columns": COLUMNS,
            "task": "retrieval",
            "max_rows": 20,
            "streaming": True,
            "batch_size": 4,
            "query_max_length": 12,
            "weight": 30.0,
        },
        "few": {
            "source": f"hf:{hub_dir}:train",
            "columns": COLUMNS,
            "task": "retrieval",
            "max_rows": 10,
            "batch_size": 8,
            "allow_small": True,
        },
    }
    dm = PairDataModule(mix, encoder=None, manifest_dir=str(tmp_path / "run"))
    dm.trainer = SimpleNamespace(world_size=2, global_rank=0, strategy=TwoRanks([0, 0, 9, 4, 0, 0, 0]))
    dm.setup("fit")
    manifest = json.loads((tmp_path / "run" / MANIFEST_FILE).read_text())
    history = manifest.pop("history")
    assert manifest == dm.manifest() and manifest["world_size"] == 2
    start = {
        "began_at_step": 0,
        "datasets": manifest_fingerprint(manifest),
        "inputs_sha1": dm.inputs_digest(),
    }
    assert history == [start] and len(start["inputs_sha1"]) == 40
    # a finished run's check loads the mix without setting up: the same fingerprint (rank 0's shares)
    assert PairDataModule(mix, encoder=None).fingerprint(mix, world=2) == manifest_fingerprint(manifest)
    bbc, pairs, few = manifest["datasets"]
    # rank 0 holds rows 0, 2, .., 18 of the first 20 (10, none blank) and 0, 2, .., 8 of the first 10 (5);
    # rank 1 rows 1, 3, .., 19 and 1, 3, .., 9, but the blank row 7 (9 and 4)
    assert (bbc["rows"], pairs["rows"], few["rows"]) == (40, 10 + 9, 5 + 4)
    assert (pairs["rows_rank0"], few["rows_rank0"]) == (10, 5)
    assert [d["sampling_weight"] for d in manifest["datasets"]] == [40, 30.0, 9]
    assert [d["sampling_probability"] for d in manifest["datasets"]] == pytest.approx(
        [40 / 79, 30 / 79, 9 / 79]
    )
    assert (bbc["source"], bbc["access"], bbc["rank_local"]) == ("bundled:bbc", "bundled", False)
    assert (pairs["source"], pairs["access"], pairs["rank_local"]) == (
        f"hf:{hub_dir}:train",
        "streaming",
        True,
    )
    assert few["access"] == "arrow" and few["fingerprint"] and pairs["fingerprint"] is None
    assert (pairs["batch_size"], pairs["query_max_length"], pairs["document_max_length"]) == (4, 12, 128)
    assert (few["allow_small"], few["repeats_rows"], pairs["repeats_rows"]) == (True, True, False)
    assert pairs["rows_read"] == 10 and pairs["dropped"] == {}
    table = dm.tables[1]
    content = [table.queries, table.documents, table.negatives, table.scores, table.labels]
    assert pairs["rows_sha1_rank0"] == hashlib.sha1(json.dumps(content).encode()).hexdigest()
    rank1 = PairDataModule(mix, encoder=None, manifest_dir=str(tmp_path / "rank1"))
    rank1.trainer = SimpleNamespace(world_size=2, global_rank=1, strategy=TwoRanks([0, 0, 10, 5, 0, 0, 0]))
    rank1.setup("fit")
    assert not (tmp_path / "rank1").exists()  # rank 0 alone writes it
    assert rank1.tables[1].stats["filtered"] == {"empty document": 1}  # row 7
    assert rank1.rows_all_ranks == dm.rows_all_ranks


def test_training_writes_the_manifest_into_the_run_directory(tmp_path, monkeypatch):
    from helpers import run_cfg

    from jina5.train import build

    cfg = run_cfg(tmp_path)
    _, datamodule, _ = build(cfg)
    monkeypatch.setattr(datamodule, "attach_teacher_vectors", lambda: None)  # the manifest is written before
    datamodule.setup("fit")
    manifest = json.loads((Path(cfg.paths.output_dir) / MANIFEST_FILE).read_text())
    assert [(d["name"], d["rows"]) for d in manifest["datasets"]] == [
        (t.spec.name, len(t)) for t in datamodule.tables
    ]
    assert [d["name"] for d in manifest["datasets"]] == ["bbc", "lee_background"]


# ------------------------------------------------------------------------------ workers and pinned memory


def _batches(dm: PairDataModule, n: int) -> list[dict]:
    it = iter(dm.train_dataloader())
    return [next(it) for _ in range(n)]


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def test_two_workers_give_the_batches_of_none_and_resume_alike(hub_dir):
    model, tokenizer = tiny_model_and_tokenizer("bert")
    encoder = Encoder(model, tokenizer=tokenizer, prompts={"query": "q: ", "document": "d: "})
    mix = {
        "bbc": {"max_rows": 40, "batch_size": 4},
        "pairs": {"source": f"hf:{hub_dir}:train", "columns": COLUMNS, "task": "retrieval", "batch_size": 3},
    }
    modules = [PairDataModule(mix, encoder=encoder, seed=5, num_workers=w) for w in (0, 2)]
    for dm in modules:
        dm.setup("fit")
    plain, workers = (_batches(dm, 12) for dm in modules)
    assert {b["dataset"] for b in plain} == {"bbc", "pairs"}
    assert all(_same(a, b) for a, b in zip(plain, workers, strict=True))
    modules[1]._start_step = lambda: 7  # a resumed run with workers continues with the unbroken run's batches
    assert all(_same(a, b) for a, b in zip(plain[7:], _batches(modules[1], 5), strict=True))
    assert not modules[0].train_dataloader().pin_memory  # auto, on CPU


def test_pin_memory_auto_follows_the_trainer_device():
    dm = PairDataModule({"bbc": {}}, encoder=None)
    assert dm._pin() is False
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)))
    assert dm._pin() is True
    assert PairDataModule({"bbc": {}}, encoder=None, pin_memory=False)._pin() is False
    with pytest.raises(ValueError, match="data.pin_memory must be"):
        PairDataModule({"bbc": {}}, encoder=None, pin_memory="yes")


def test_two_ddp_ranks_train_on_their_own_shards_of_a_hub_source(hub_dir, tmp_path):
    """A real 2-rank run (gloo, ddp_spawn): each rank reads its half of the hub rows, the row counts are
    summed through the strategy (a collective), rank 0 writes the manifest of the whole mix."""
    from helpers import run_cfg

    from jina5.train import train

    pairs = (
        f"{{source: 'hf:{hub_dir}:train', columns: {{sentence1: query, sentence2: document}}, task: retrieval, "
        "batch_size: 4, query_max_length: 16, document_max_length: 32}"
    )
    cfg = run_cfg(
        tmp_path, "trainer=ddp_cpu", f"+data.datasets.pairs={pairs}", "trainer.max_steps=3", "export=false"
    )
    train(cfg)
    manifest = json.loads((Path(cfg.paths.output_dir) / MANIFEST_FILE).read_text())
    entry = next(d for d in manifest["datasets"] if d["name"] == "pairs")
    assert manifest["world_size"] == 2 and entry["rank_local"] and entry["access"] == "arrow"
    assert entry["rows"] == N_ROWS - len(BLANK) and entry["rows_rank0"] == N_ROWS // 2  # both blanks are odd
