"""Stage 2: LoRA task adapters, hard-negative mining, checkpoint averaging, the relational reference,
per-batch loss switching, and the sentence-transformers export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import add_random_adapter, run_cfg

from jina5.data.hard_negatives import MiningConfig, mine_hard_negatives
from jina5.data.pairs import DatasetSpec, PairTable, attach_hard_negatives, label_triplets
from jina5.data.schema import normalise_text
from jina5.export import combine_adapters, export_sentence_transformers
from jina5.model.adapters import DEFAULT_TASK_PROMPTS, EVAL_TASK_TO_ADAPTER, lora_config
from jina5.model.encoder import Encoder
from jina5.model.tiny import tiny_model_and_tokenizer
from jina5.runs.averaging import average_state_dicts
from jina5.train import build, train

TEXTS = ["the cat sat on the mat", "stock markets fell sharply", "a b c", "rain is expected tomorrow"]
PROMPTS = {"query": "Query: ", "document": "Document: "}


def tiny_encoder(model_type: str = "bert", layers: int = 2) -> Encoder:
    model, tok = tiny_model_and_tokenizer(model_type, layers=layers)
    return Encoder(model, tokenizer=tok, prompts=PROMPTS)


FAST = ["student.max_length=32", "teacher.max_length=32"]  # short texts: these tests check code paths


def own_data_cfg(tmp_path: Path, *overrides: str):
    """``run_cfg`` (tiny student and teacher) with the experiment's own data config."""
    return run_cfg(tmp_path, *FAST, *overrides, small_data=False)


def lora_free(state: dict) -> dict:
    return {k: v for k, v in state.items() if "lora_" not in k}


# ---------------------------------------------------------------------------------------------- encoder
@pytest.mark.parametrize("model_type", ["bert", "mpnet", "qwen3", "eurobert"])
def test_lora_goes_on_every_attention_and_mlp_linear(model_type):
    enc = tiny_encoder(model_type)
    linear = {n for n, m in enc.backbone.named_modules() if isinstance(m, torch.nn.Linear)}
    enc.add_adapter("retrieval", lora_config(model_type, rank=4, alpha=4))
    wrapped = {
        n.removeprefix("base_model.model.") for n, m in enc.backbone.named_modules() if hasattr(m, "lora_A")
    }
    assert wrapped == linear and len(wrapped) == 2 * (6 if model_type == "mpnet" else 7) - 2 * (
        model_type == "bert"
    )
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A.retrieval." in n or ".lora_B.retrieval." in n for n in trainable)


def test_fresh_adapter_is_the_base_model_and_switching_restores_exactly():
    enc = tiny_encoder()
    before = {p: enc.encode(TEXTS, prompt=p) for p in ("query", "document")}
    enc.add_adapter("retrieval", lora_config("bert", rank=4, alpha=4), DEFAULT_TASK_PROMPTS["retrieval"])
    assert np.array_equal(enc.encode(TEXTS, prompt="query", task="retrieval"), before["query"])  # B = 0
    add_random_adapter(enc, "classification", seed=1)
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if "lora_B.retrieval." in name:
                p.normal_(0, 0.3)
    r1 = enc.encode(TEXTS, prompt="query", task="retrieval")
    c1 = enc.encode(TEXTS, prompt="query", task="classification")
    r2 = enc.encode(TEXTS, prompt="query", task="retrieval")
    assert np.abs(r1 - c1).max() > 1e-2  # another adapter (and prefix) gives other vectors
    assert np.array_equal(r1, r2)  # switching back restores them bit for bit
    assert enc.task == "classification"  # encode(task=) does not change the active adapter
    with enc.adapters_disabled(), enc.using_task("retrieval"):
        assert np.array_equal(enc.encode(TEXTS, prompt="query"), before["query"])
    # the prefix follows the adapter: classification encodes a "query" as a "Document: " text
    assert enc.for_task("classification").prompts == {"query": "Document: ", "document": "Document: "}
    np.testing.assert_array_equal(enc.for_task("classification").encode(TEXTS, prompt="query"), c1)
    with pytest.raises(KeyError, match="no adapter 'clustering'"):
        enc.encode(TEXTS, task="clustering")


def test_eval_task_routing_covers_every_task_type():
    from jina5.eval.task_types import TASK_TYPES

    assert set(EVAL_TASK_TO_ADAPTER) == set(TASK_TYPES)
    assert EVAL_TASK_TO_ADAPTER["sts"] == "text-matching"


# ---------------------------------------------------------------------------------------------- export
def test_export_round_trip_through_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer

    enc = tiny_encoder(layers=3)
    add_random_adapter(enc, "retrieval", seed=0)
    add_random_adapter(enc, "text-matching", seed=1)
    for task in ("retrieval", "text-matching"):
        out = export_sentence_transformers(enc, task, tmp_path / task)
        assert not list(out.glob("adapter*")) and not (out / "adapters").exists()  # merged: plain weights
        st = SentenceTransformer(str(out), device="cpu")
        for prompt in ("query", "document"):
            ours = enc.encode(TEXTS, task=task, prompt=prompt)
            theirs = st.encode(TEXTS, prompt_name=prompt, convert_to_numpy=True)
            np.testing.assert_allclose(theirs, ours, atol=1e-5)
    # the merged exports differ from each other (the adapter is really in the weights)
    a = SentenceTransformer(str(tmp_path / "retrieval"), device="cpu").encode(TEXTS, prompt_name="document")
    b = SentenceTransformer(str(tmp_path / "text-matching"), device="cpu").encode(
        TEXTS, prompt_name="document"
    )
    assert np.abs(a - b).max() > 1e-2


@pytest.mark.integration
def test_export_round_trip_real_minilm(tmp_path):
    """The same through sentence-transformers with the real (pruned) MiniLM student and a trained-size adapter."""
    from sentence_transformers import SentenceTransformer

    enc = Encoder(
        "sentence-transformers/all-MiniLM-L6-v2", keep_layers=[0, 2, 4], max_length=128, prompts=PROMPTS
    )
    enc.add_adapter("retrieval", lora_config("bert"), DEFAULT_TASK_PROMPTS["retrieval"])
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    st = SentenceTransformer(
        str(export_sentence_transformers(enc, "retrieval", tmp_path / "st")), device="cpu"
    )
    for prompt in ("query", "document"):
        np.testing.assert_allclose(
            st.encode(TEXTS, prompt_name=prompt),
            enc.encode(TEXTS, task="retrieval", prompt=prompt),
            atol=1e-5,
        )


def test_multi_adapter_directory_restores_every_adapter(tmp_path):
    enc = tiny_encoder()
    add_random_adapter(enc, "retrieval", seed=0)
    enc.save_pretrained(tmp_path / "run_a" / "encoder")
    other = Encoder.from_pretrained(tmp_path / "run_a" / "encoder", trainable_adapters=True)
    other.backbone.delete_adapter("retrieval")
    other.task = None
    add_random_adapter(other, "clustering", seed=2)
    other.save_pretrained(tmp_path / "run_b" / "encoder")
    combined = combine_adapters([tmp_path / "run_a", tmp_path / "run_b"], tmp_path / "all")
    loaded = Encoder.from_pretrained(tmp_path / "all")
    assert sorted(loaded.adapters) == ["clustering", "retrieval"]
    assert not (tmp_path / "all" / "modules.json").exists()  # not a (misleading) base-model ST dir
    for task, source in (("retrieval", enc), ("clustering", other)):
        want = source.encode(TEXTS, task=task, prompt="query")
        np.testing.assert_allclose(loaded.encode(TEXTS, task=task, prompt="query"), want, atol=1e-6)
        np.testing.assert_allclose(combined.encode(TEXTS, task=task, prompt="query"), want, atol=1e-6)
    with loaded.adapters_disabled():
        np.testing.assert_allclose(loaded.encode(TEXTS), tiny_encoder().encode(TEXTS), atol=1e-6)


def test_combining_runs_of_different_backbones_is_refused(tmp_path):
    a = tiny_encoder()
    add_random_adapter(a, "retrieval", seed=0)
    a.save_pretrained(tmp_path / "a")
    model, tok = tiny_model_and_tokenizer("bert", layers=2, seed=5)
    b = Encoder(model, tokenizer=tok, prompts=PROMPTS)
    add_random_adapter(b, "clustering", seed=0)
    b.save_pretrained(tmp_path / "b")
    with pytest.raises(ValueError, match="backbone differs"):
        combine_adapters([tmp_path / "a", tmp_path / "b"], tmp_path / "all")


# ---------------------------------------------------------------------------------------------- mining
def _mining_fixture(n: int = 40, m: int = 200, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    docs = rng.normal(size=(m, dim))
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    positive = np.arange(n)
    queries = docs[positive] + 0.3 * rng.normal(size=(n, dim))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    # plant, for every query, a near-duplicate of its positive (cos ~ 0.99) among the other documents
    for i in range(n):
        dup = docs[i] + 0.1 * rng.normal(size=dim)
        docs[n + i] = dup / np.linalg.norm(dup)
    return queries.astype(np.float32), docs.astype(np.float32), positive


def test_mining_never_returns_the_positive_or_a_near_duplicate():
    q, d, positive = _mining_fixture()
    cfg = MiningConfig(num_negatives=5, rank_range=(0, 30), margin=0.05, max_positive_similarity=0.95)
    mined, stats = mine_hard_negatives(q, d, positive, cfg)
    pos_score = np.einsum("nd,nd->n", q, d[positive])
    for i, row in enumerate(mined):
        assert len(row) == 5 and len(set(row)) == 5
        assert positive[i] not in row
        assert all(d[j] @ d[positive[i]] <= 0.95 for j in row)
        assert all(q[i] @ d[j] <= pos_score[i] - 0.05 for j in row)
    assert stats.dropped_near_duplicate + stats.dropped_margin > 0  # the filters had something to drop
    # without the filters the planted near-duplicates would be picked: the test can fail
    loose, _ = mine_hard_negatives(
        q,
        d,
        positive,
        MiningConfig(num_negatives=5, rank_range=(0, 30), margin=-10, max_positive_similarity=1.1),
    )
    assert sum(40 + i in row for i, row in enumerate(loose)) > 0


def test_mining_takes_the_rank_window_first():
    q, d, positive = _mining_fixture(seed=1)
    cfg = MiningConfig(num_negatives=3, rank_range=(10, 50), margin=0.0, max_positive_similarity=1.1)
    mined, stats = mine_hard_negatives(q, d, positive, cfg)
    for i, row in enumerate(mined):
        order = [j for j in np.argsort(-(d @ q[i]), kind="stable") if j != positive[i]]
        ranks = [order.index(j) for j in row]
        assert all(10 <= r < 50 for r in ranks), ranks
    assert stats.short_rows == 0 and stats.from_top_up == 0


def test_attach_hard_negatives_skips_exact_duplicates_of_the_positive():
    enc = tiny_encoder()
    docs = [f"document number {i} about topic {i % 7}" for i in range(60)]
    queries = [f"query {i}" for i in range(60)]
    docs[1] = docs[0].upper() + "  "  # same normalised text as row 0's positive
    table = PairTable(DatasetSpec("toy"), queries, docs)
    attach_hard_negatives(
        table,
        enc,
        MiningConfig(num_negatives=4, rank_range=(0, 20), margin=-1.0, max_positive_similarity=1.1),
    )
    for doc, negs in zip(table.documents, table.negatives, strict=True):
        assert len(negs) == 4
        assert normalise_text(doc) not in {normalise_text(n) for n in negs}


def test_label_triplets():
    texts = [f"text {i}" for i in range(30)]
    labels = [["a", "b", "c"][i % 3] for i in range(30)]
    labels[29] = "lonely"
    q, d, n, lab = label_triplets(texts, labels, list(range(30)), n_negatives=7, seed=0)
    assert len(q) == 29  # "lonely" has no positive
    for anchor, pos, negs, label in zip(q, d, n, lab, strict=True):
        assert pos != anchor and labels[texts.index(pos)] == label
        assert len(negs) == 7 and all(labels[texts.index(x)] != label for x in negs)


def test_objective_skip_if_present_switches_per_batch():
    from jina5.losses import CoSENT, EmbeddingBatch, InfoNCE
    from jina5.training.objective import Objective

    obj = Objective(
        {"cosent": CoSENT(), "infonce": InfoNCE()},
        {"cosent": 1.0, "infonce": 1.0},
        skip_missing=True,
        skip_if_present={"infonce": ["scores"]},
    )
    q, d = torch.nn.functional.normalize(torch.randn(2, 4, 8), dim=-1)
    assert set(obj(EmbeddingBatch(q, d))[1]) == {"infonce"}
    assert set(obj(EmbeddingBatch(q, d, scores=torch.rand(4)))[1]) == {"cosent"}
    with pytest.raises(ValueError, match="unknown batch fields"):
        Objective({"infonce": InfoNCE()}, {"infonce": 1.0}, skip_if_present={"infonce": ["score"]})


# ---------------------------------------------------------------------------------------------- averaging
def test_average_state_dicts_by_hand():
    a = {"w": torch.tensor([1.0, 3.0]), "step": torch.tensor(4)}
    b = {"w": torch.tensor([3.0, 5.0]), "step": torch.tensor(4)}
    avg = average_state_dicts(a, b, weight=0.75)
    assert torch.equal(avg["w"], torch.tensor([1.5, 3.5])) and avg["step"].item() == 4
    with pytest.raises(ValueError, match="disagree"):
        average_state_dicts(a, {**b, "step": torch.tensor(5)})


# ---------------------------------------------------------------------------------------------- training
def test_only_adapter_weights_train(tmp_path):
    cfg = run_cfg(
        tmp_path,
        *FAST,
        "experiment=adapter/retrieval",
        "trainer.max_steps=1",
        "adapter.average_with=null",
        "optimizer.lr=1e-2",
        "data.dev_datasets=[]",
    )
    module, datamodule, trainer = build(cfg)
    encoder = module.encoder
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A.retrieval." in n or ".lora_B.retrieval." in n for n in trainable)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    trainer.fit(module, datamodule=datamodule)
    after = encoder.state_dict()
    for k, v in lora_free(before).items():
        assert torch.equal(v, after[k]), f"frozen weight {k} changed"
    moved = [k for k in before if "lora_B" in k and not torch.equal(before[k], after[k])]
    assert moved, "no adapter weight moved"
    proj = module.objective.losses["distill"].proj.weight
    assert proj.requires_grad  # adapter.train_projection=true


def test_relational_loss_is_zero_at_step_zero_through_the_module(tmp_path):
    cfg = own_data_cfg(
        tmp_path,
        "experiment=adapter/classification",
        "data.dev_datasets=[]",
        "~data.datasets",
        "+data.datasets={bbc: {label_triplets: true, label_negatives: 7, batch_size: 4, "
        "query_max_length: 24, document_max_length: 24, max_rows: 16}}",
    )
    module, datamodule, _ = build(cfg)
    datamodule.setup("fit")
    assert all(any(t.negatives) for t in datamodule.tables)  # label triplets carry 7 negatives
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["negatives_per_query"] == 7
    module.eval()
    eb = module.embedding_batch(batch)
    assert eb.base_query is not None and eb.base_negatives is not None
    _, parts = module.objective(eb)
    assert parts["relational"].item() == 0.0  # fresh adapter (B = 0): student == base model
    with torch.no_grad():
        for name, p in module.encoder.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    _, parts = module.objective(module.embedding_batch(batch))
    assert parts["relational"].item() > 1e-4  # and it sees a change: the test can fail
    # the base reference has no gradient path
    module.train()
    eb = module.embedding_batch(batch)
    assert not eb.base_query.requires_grad and eb.query.requires_grad


def test_retrieval_checkpoint_average_equals_manual_average(tmp_path):
    cfg = run_cfg(
        tmp_path,
        *FAST,
        "experiment=adapter/retrieval",
        "trainer.max_steps=4",
        "adapter.average_with=2",
        "adapter.average_weight=0.5",
        "optimizer.lr=1e-2",
        "trainer.val_check_interval=2",
    )
    summary = train(cfg)
    ckpts = Path(cfg.paths.output_dir) / "checkpoints"
    assert summary["averaged_with"].endswith("step2.ckpt")
    a = torch.load(ckpts / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(ckpts / "step2.ckpt", weights_only=False)["state_dict"]
    avg = torch.load(ckpts / "averaged.ckpt", weights_only=False)["state_dict"]
    lora = [k for k in a if "lora_B" in k]
    assert any(not torch.equal(a[k], b[k]) for k in lora)  # two different checkpoints
    for k in a:
        want = (a[k] + b[k]) / 2 if torch.is_floating_point(a[k]) else a[k]
        torch.testing.assert_close(avg[k], want, rtol=0, atol=1e-7)
    # the exported encoder carries the averaged adapter
    exported = Encoder.from_pretrained(Path(cfg.paths.output_dir) / "encoder")
    ours = {k.removeprefix("backbone."): v for k, v in exported.state_dict().items() if "lora_" in k}
    for k, v in ours.items():
        torch.testing.assert_close(v, avg[f"encoder.backbone.{k}"], rtol=0, atol=1e-7)


def test_text_matching_switches_losses_per_batch(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        {"sentence1": f"sentence {i} about {w}", "sentence2": f"another text on {w} {i}", "score": float(s)}
        for i, (w, s) in enumerate(
            zip(rng.choice(["cats", "stocks", "rain"], 40), rng.uniform(0, 1, 40), strict=True)
        )
    ]
    scored = tmp_path / "scored.jsonl"
    scored.write_text("\n".join(json.dumps(r) for r in rows))
    data = (
        "+data.datasets={toy_sts: {source: '" + str(scored) + "', task: sts, batch_size: 8, "
        "columns: {sentence1: query, sentence2: document, score: score}},"
        "bbc: {batch_size: 8, query_max_length: 16, document_max_length: 24, max_rows: 40}}"
    )
    cfg = run_cfg(
        tmp_path,
        *FAST,
        "experiment=adapter/text_matching",
        "~data.datasets",
        data,
        "trainer.max_steps=6",
        "data.dev_datasets=[]",
    )
    seen: list[tuple[bool, tuple[str, ...]]] = []

    class Spy(__import__("lightning").Callback):
        def on_fit_start(self, trainer, module):
            forward = module.objective.forward

            def spy(batch):
                total, parts = forward(batch)
                seen.append((batch.scores is not None, tuple(sorted(parts))))
                return total, parts

            module.objective.forward = spy

    train(cfg, callbacks=[Spy()])
    assert (True, ("cosent",)) in seen and (False, ("distill", "infonce")) in seen
    assert set(seen) == {(True, ("cosent",)), (False, ("distill", "infonce"))}


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage1")
    cfg = run_cfg(
        root, *FAST, "experiment=ablation/pure_distill", "trainer.max_steps=2", "trainer.val_check_interval=2"
    )
    train(cfg)
    return Path(cfg.paths.output_dir)


def test_init_from_loads_the_stage1_encoder_and_projection(tmp_path, stage1_run):
    cfg = run_cfg(
        tmp_path, *FAST, "experiment=adapter/retrieval", f"init_from={stage1_run}", "+trainer.fast_dev_run=1"
    )
    module, _, _ = build(cfg)
    stage1 = torch.load(stage1_run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    torch.testing.assert_close(
        module.objective.losses["distill"].proj.weight,
        stage1["objective.losses.distill.proj.weight"],
        rtol=0,
        atol=0,
    )
    base = Encoder.from_pretrained(stage1_run / "encoder")
    with module.encoder.adapters_disabled():
        np.testing.assert_array_equal(
            module.encoder.encode(TEXTS, prompt="query"), base.encode(TEXTS, prompt="query")
        )
    summary = train(cfg)
    assert summary["steps"] == 1
    assert (
        Path(cfg.paths.output_dir) / "encoder" / "adapters" / "retrieval" / "adapter_config.json"
    ).exists()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["retrieval", "text_matching", "clustering", "classification"])
def test_adapter_experiments_on_their_own_data(tmp_path, stage1_run, task):
    cfg = own_data_cfg(
        tmp_path,
        f"experiment=adapter/{task}",
        f"init_from={stage1_run}",
        "data.max_rows_cap=48",
        "+trainer.fast_dev_run=2",
    )
    assert train(cfg)["steps"] == 2
