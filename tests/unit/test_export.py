"""Exports that round-trip in plain sentence-transformers for every student: the EOS of last-token
students, no pooler load report, the model card, and ``push_to_hub`` (mocked: no network)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import yaml
from tokenizers import Tokenizer
from tokenizers import processors as tp
from transformers import AutoTokenizer

from jina5.eval.store import ResultsStore
from jina5.export import add_eval_metrics
from jina5.export import main as export_main
from jina5.model.card import CARD_FILE, CardInfo, resolve_base_model
from jina5.model.encoder import Encoder
from jina5.model.io import content_fingerprint
from jina5.model.st_format import appends_eos, with_eos
from jina5.model.tiny import char_tokenizer

MAX_LENGTH = 12
LONG = "the quick brown fox jumps over the lazy dog"  # > MAX_LENGTH characters: truncated
TEXTS = ["the cat sat on the mat", "stock markets fell", "a b c", LONG]
PROMPTS = {"query": "q: ", "document": "d: "}


def last_token_student(model_type: str) -> Encoder:
    """A paper-style last-token student at toy size (conf/student/{qwen3_0_6b,eurobert_210m}.yaml)."""
    return Encoder(
        f"tiny:{model_type}", pooling="last_token", append_eos=True, max_length=MAX_LENGTH, prompts=PROMPTS
    )


def st_model(path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


# ---------------------------------------------------------------------------------------------- EOS
@pytest.mark.parametrize("model_type", ["qwen3", "eurobert"])
def test_append_eos_students_round_trip_through_plain_sentence_transformers(tmp_path, model_type):
    enc = last_token_student(model_type)
    path = enc.save_pretrained(tmp_path / "enc")
    st = st_model(path)
    for prompt in (None, "query", "document"):
        theirs = st.encode(TEXTS, prompt_name=prompt, convert_to_numpy=True)
        np.testing.assert_allclose(theirs, enc.encode(TEXTS, prompt=prompt), atol=1e-5)
    # the saved tokenizer appends the EOS itself, after truncation, exactly where Encoder puts it
    tokenizer = AutoTokenizer.from_pretrained(path)
    ours = enc.tokenize_ids(TEXTS)
    assert all(ids[-1] == enc.tokenizer.eos_token_id for ids in ours) and len(ours[-1]) == MAX_LENGTH
    assert tokenizer(TEXTS, truncation=True, max_length=MAX_LENGTH)["input_ids"] == ours
    # ... and the Encoder loaded back appends nothing more: the same ids, vectors and fingerprint
    again = Encoder.from_pretrained(path, attn_implementation="eager")
    assert again.tokenizer_appends_eos and again.tokenize_ids(TEXTS, "query") == enc.tokenize_ids(
        TEXTS, "query"
    )
    np.testing.assert_array_equal(again.encode(TEXTS, prompt="query"), enc.encode(TEXTS, prompt="query"))
    assert content_fingerprint(again) == content_fingerprint(enc)
    # saving the loaded encoder again does not append a second EOS
    twice = again.save_pretrained(tmp_path / "twice")
    assert (
        AutoTokenizer.from_pretrained(twice)(TEXTS, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        == ours
    )
    np.testing.assert_allclose(st_model(twice).encode(TEXTS), enc.encode(TEXTS), atol=1e-5)


def test_a_tokenizer_that_already_appends_the_eos_is_kept_and_truncates_one_token_earlier(tmp_path):
    """A Qwen3-Embedding-like tokenizer ends every text with the EOS: Encoder truncates such texts to
    max_length - 1 tokens (EOS included), so sentence-transformers must too."""
    enc = last_token_student("qwen3")
    backend = enc.tokenizer.backend_tokenizer
    backend.post_processor = tp.TemplateProcessing(
        single="$A [EOS]",
        pair="$A [EOS] $B:1 [EOS]:1",
        special_tokens=[("[EOS]", enc.tokenizer.eos_token_id)],
    )
    assert appends_eos(enc.tokenizer)
    path = enc.save_pretrained(tmp_path / "enc")
    assert "tokenizer_appends_eos" not in json.loads((path / "jina5_encoder.json").read_text())
    assert json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"] == MAX_LENGTH - 1
    ids = AutoTokenizer.from_pretrained(path)("abc")["input_ids"]
    assert ids[-1] == enc.tokenizer.eos_token_id and ids[-2] != ids[-1]  # one EOS, not two
    np.testing.assert_allclose(st_model(path).encode(TEXTS), enc.encode(TEXTS), atol=1e-5)
    again = Encoder.from_pretrained(path)
    assert not again.tokenizer_appends_eos and again.tokenize_ids(TEXTS) == enc.tokenize_ids(TEXTS)


def _ids(post_processor: dict | None, text: str = "ab") -> list[int]:
    tok = char_tokenizer(add_cls_sep=False).backend_tokenizer
    spec = json.loads(tok.to_str())
    spec["post_processor"] = with_eos(post_processor, "[EOS]", 4)
    return Tokenizer.from_str(json.dumps(spec)).encode(text).ids


def test_with_eos_appends_the_eos_after_what_each_post_processor_adds():
    a, b, cls, sep = 5, 6, 2, 3  # "a", "b", [CLS], [SEP] in the char tokenizer; [EOS] is 4
    template = json.loads(
        tp.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
        ).__getstate__()
    )
    bos_only = json.loads(
        tp.TemplateProcessing(single="[CLS] $A", special_tokens=[("[CLS]", 2)]).__getstate__()
    )
    byte_level = json.loads(tp.ByteLevel(trim_offsets=False).__getstate__())
    sequence = {"type": "Sequence", "processors": [byte_level, bos_only]}
    assert _ids(None) == [a, b, 4]
    assert _ids(template) == [cls, a, b, sep, 4]
    assert _ids(bos_only) == [cls, a, b, 4]  # EuroBERT-like: BOS <text> EOS
    assert _ids(sequence) == [cls, a, b, 4]  # Llama-3-like: ByteLevel then the template
    assert _ids(byte_level) == [a, b, 4]
    with pytest.raises(ValueError, match="BertProcessing"):
        with_eos(json.loads(tp.BertProcessing(("[SEP]", 3), ("[CLS]", 2)).__getstate__()), "[EOS]", 4)


# ---------------------------------------------------------------------------------------------- pooler
def test_plain_sentence_transformers_load_reports_no_missing_pooler(tmp_path, capfd, caplog):
    """A BERT-like export is saved without the [CLS] pooler; loading it must not report "newly
    initialized" pooler weights (the config tells sentence-transformers to build none)."""
    path = Encoder("tiny:bert", prompts=PROMPTS).save_pretrained(tmp_path / "enc")
    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        st = st_model(path)
    out, err = capfd.readouterr()
    said = out + err + caplog.text
    assert "pooler" not in said and "MISSING" not in said and "newly initialized" not in said, said
    assert getattr(st[0].auto_model, "pooler", None) is None
    assert json.loads((path / "sentence_bert_config.json").read_text())["model_kwargs"] == {
        "add_pooling_layer": False
    }


# ---------------------------------------------------------------------------------------------- model card
def make_run(tmp_path, matryoshka: bool = True):
    """A finished run dir as ``jina5.runs.lifecycle`` leaves it: config.yaml, done.json and encoder/."""
    run = tmp_path / "run"
    run.mkdir()
    config = {
        "experiment_name": "truncation/combined_matryoshka",
        "seed": 3,
        "student": {"source": "sentence-transformers/all-MiniLM-L6-v2"},
        "objective": {
            "weights": {"distill": 2.0, "infonce": 1.0, "gor": 1.0, "score_distill": 0.0},
            "matryoshka": {"enabled": matryoshka, "dims": [8, 16, 32], "weights": None},
        },
    }
    (run / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    done = {"steps": 40, "metrics": {"val/ndcg@10": 0.8125, "train/loss": 1.5, "train/lr": 1e-4}}
    (run / "done.json").write_text(json.dumps(done))
    Encoder("tiny:bert", prompts={"query": "Query: ", "document": "Document: "}).save_pretrained(
        run / "encoder"
    )
    return run


def test_export_writes_a_model_card_with_the_runs_facts(tmp_path):
    run = make_run(tmp_path)
    out = tmp_path / "export"
    export_main([f"run={run}", f"out={out}"])
    card = (out / "README.md").read_text()
    front = card.split("---")[1]  # the card's YAML metadata
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in front and "- matryoshka" in front
    # the license is the base model's, read from its bundled model card, and the card says so
    assert yaml.safe_load(front)["license"] == "apache-2.0"
    assert "**License:** apache-2.0 (from the model card of sentence-transformers/all-MiniLM-L6-v2)" in card
    assert "SentenceTransformer based on sentence-transformers/all-MiniLM-L6-v2" in card
    assert "`query`: `'Query: '`, `document`: `'Document: '`" in card
    assert "**Matryoshka dims:** 8, 16, 32" in card
    assert "**Training objective:** 2 x distill + 1 x infonce + 1 x gor (logged only: score_distill)" in card
    assert "experiment `truncation/combined_matryoshka`, seed 3, 40 steps" in card
    assert "| val/ndcg@10 | 0.8125 |" in card and "train/lr" not in card
    assert json.loads((out / CARD_FILE).read_text())["matryoshka_dims"] == [8, 16, 32]
    # still our directory and still an exact sentence-transformers model
    enc = Encoder.from_pretrained(run / "encoder")
    np.testing.assert_allclose(
        st_model(out).encode(TEXTS, prompt_name="query"), enc.encode(TEXTS, prompt="query"), atol=1e-6
    )
    np.testing.assert_array_equal(Encoder.from_pretrained(out).encode(TEXTS), enc.encode(TEXTS))


def test_card_without_matryoshka_says_so_and_follows_saved_directories_to_the_base_model(tmp_path):
    run = make_run(tmp_path, matryoshka=False)
    export_main([f"run={run}", f"out={tmp_path / 'a'}"])
    assert (
        "**Matryoshka dims:** none (trained without `objective.matryoshka`)"
        in (tmp_path / "a" / "README.md").read_text()
    )
    # a stage-2 student starts from a stage-1 encoder dir: the base model is the one that dir started from
    (run / "encoder" / CARD_FILE).write_text(json.dumps({"base_model": "org/stage0"}))
    assert resolve_base_model(str(run / "encoder")) == "org/stage0"
    assert resolve_base_model(f"{run / 'encoder'}+retrieval") == "org/stage0"
    assert (
        resolve_base_model("bundled:sentence-transformers/all-MiniLM-L6-v2")
        == "sentence-transformers/all-MiniLM-L6-v2"
    )
    assert resolve_base_model("tiny:bert") is None


def test_card_metrics_come_from_the_broadest_evaluation_of_this_model(tmp_path):
    """Matched by fingerprint; a later smoke run with fewer task types does not hide the full one."""
    from jina5.eval.encoding import model_fingerprint
    from jina5.eval.task_types import MAIN_METRIC

    enc = Encoder("tiny:bert")
    store = ResultsStore(tmp_path / "results.jsonl")

    def record(task: str, value: float, dim: int = 32) -> dict:
        return {
            "task": task,
            "dataset": "d",
            "language": None,
            "split": "test",
            "metric": MAIN_METRIC[task],
            "dim": dim,
            "precision": "float32",
            "value": value,
        }

    def run(run_id: str, fingerprint: str) -> dict:
        return {
            "run_id": run_id,
            "experiment": "x",
            "seed": 0,
            "model": "m",
            "model_fingerprint": fingerprint,
        }

    fp = model_fingerprint(enc)
    store.append([record("retrieval", 0.5), record("sts", 0.7), record("sts", 0.1, dim=8)], run("full", fp))
    store.append([record("retrieval", 0.9)], run("smoke", fp))
    store.append(
        [record("retrieval", 0.2), record("sts", 0.2), record("clustering", 0.2)],
        run("other", "not-this-model"),
    )
    card = add_eval_metrics(CardInfo(), store.path, enc)
    assert card.eval_run == "full"
    assert card.eval_metrics == pytest.approx({"retrieval": 0.5, "sts": 0.7, "overall": 0.6})
    assert card.eval_intervals == {} and card.eval_confidence is None  # no per-item scores in this store


HUB_ROWS = {
    "q": [f"question {i} about topic {i % 5}" for i in range(48)],
    "d": [f"answer {i}." for i in range(48)],
}


def front_matter(readme: Path) -> dict:
    """The YAML metadata of a model card (between its first two ``---`` lines)."""
    return yaml.safe_load(readme.read_text().split("---")[1])


def test_a_trained_runs_card_names_its_data_languages_license_and_scores(tmp_path, monkeypatch):
    """A tiny run on two bundled corpora (English) and a hub set (served from memory; German by
    ``data.language``) whose student (tiny) has no license of its own: ``export.license`` names it."""
    from helpers import main_records, run_cfg, synthetic_items

    from jina5.data import sources
    from jina5.eval.bootstrap import resample_counts
    from jina5.eval.encoding import model_fingerprint
    from jina5.export import load_run_encoder
    from jina5.train import train

    def fake_load(name, config, split, cache_dir, streaming):
        assert (name, split) == ("org/pairs", "train")
        return datasets.Dataset.from_dict(HUB_ROWS)

    monkeypatch.setattr(sources.datasets, "load_dataset", fake_load)
    cfg = run_cfg(
        tmp_path,
        "experiment=ablation/combined",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "+data.datasets.pairs={source: 'hf:org/pairs:train', columns: {q: query, d: document}, task: retrieval,"
        " batch_size: 8, query_max_length: 16, document_max_length: 16}",
        "+data.language=de",
        "export.license=mit",
    )
    run = Path(train(cfg)["run_dir"])
    # the run's own encoder/ card (written at the end of training) already knows the data and the license
    trained = front_matter(run / "encoder" / "README.md")
    assert (trained["license"], trained["language"], trained["datasets"]) == (
        "mit",
        ["de", "en"],
        ["org/pairs"],
    )

    # its suite scores, with per-item scores: retrieval on one data set, STS on another
    store = ResultsStore(tmp_path / "results.jsonl")
    fingerprint = model_fingerprint(load_run_encoder(run))
    items = {
        ("retrieval", "news"): synthetic_items("retrieval", "news", "", 60, 0.6, "m"),
        ("sts", "lee_sts"): synthetic_items("sts", "lee_sts", "", 80, 0.5, "m"),
    }
    records = []
    for (task, dataset), scores in items.items():
        ref = store.write_items("suite", f"{task}-{dataset}", {(32, "float32"): scores})
        records += main_records(task, dataset, "", 32, "float32", scores.metric(), items=ref)
    store.append(
        records,
        {"run_id": "suite", "experiment": "x", "seed": 0, "model": "m", "model_fingerprint": fingerprint},
    )

    out = tmp_path / "export"
    export_main([f"run={run}", f"out={out}", f"results={store.path}"])
    readme = (out / "README.md").read_text()
    front = front_matter(out / "README.md")
    assert (front["license"], front["language"], front["datasets"]) == ("mit", ["de", "en"], ["org/pairs"])
    for field in ("Training Dataset", "Language", "License"):  # sentence-transformers' own fields
        assert f"**{field}:** Unknown" not in readme
    assert "- [pairs](https://huggingface.co/datasets/org/pairs)" in readme  # sentence-transformers' list
    assert "**License:** mit (from export.license)" in readme
    assert "**Languages:** de, en (of the training data)" in readme
    assert "| pairs | [org/pairs](https://huggingface.co/datasets/org/pairs) | 48 | de |" in readme
    assert "| bbc | `bundled:bbc` | 64 | en |" in readme  # SMALL_DATA's max_rows

    # the scores with their 95% intervals; retrieval's recomputed here from the per-query nDCG
    ndcg = items[("retrieval", "news")].arrays["ndcg"]
    resampled = resample_counts(len(ndcg), 1000, 0, "retrieval/news//test") @ ndcg / len(ndcg)
    low, high = np.percentile(resampled, [2.5, 97.5])
    assert f"| retrieval | {ndcg.mean():.4f} | [{low:.4f}, {high:.4f}] |" in readme
    card = json.loads((out / CARD_FILE).read_text())
    assert card["eval_confidence"] == 0.95 and set(card["eval_intervals"]) == {"retrieval", "sts", "overall"}
    for level, (lo, hi) in card["eval_intervals"].items():
        assert lo < card["eval_metrics"][level] < hi

    # license= on the command line replaces it, and says so
    export_main([f"run={run}", f"out={tmp_path / 'again'}", "license=cc-by-4.0"])
    assert front_matter(tmp_path / "again" / "README.md")["license"] == "cc-by-4.0"
    assert (
        "**License:** cc-by-4.0 (from jina5-export license=)"
        in (tmp_path / "again" / "README.md").read_text()
    )


def test_the_license_follows_saved_encoders_to_the_base_models_card(tmp_path, caplog):
    """A stage-2 student starts from a stage-1 encoder dir: its license is that run's (card file), else
    the README of the model that dir started from; a configured license wins, with a warning."""
    from jina5.model.card import base_model_license, card_license

    stage1 = Encoder("tiny:bert").save_pretrained(tmp_path / "stage1")
    assert base_model_license(str(stage1)) == (None, None)
    settings = json.loads((stage1 / "jina5_encoder.json").read_text())
    (stage1 / "jina5_encoder.json").write_text(
        json.dumps({**settings, "source": "sentence-transformers/all-MiniLM-L6-v2"})
    )
    found = ("apache-2.0", "the model card of sentence-transformers/all-MiniLM-L6-v2")
    assert base_model_license(str(stage1)) == found
    assert base_model_license(f"{stage1}+retrieval") == found
    assert base_model_license("bundled:sentence-transformers/all-MiniLM-L6-v2") == found
    (stage1 / CARD_FILE).write_text(json.dumps({"license": "mit", "license_source": "export.license"}))
    assert base_model_license(str(stage1)) == ("mit", "export.license")
    assert base_model_license("tiny:bert") == base_model_license("Qwen/Qwen3-Embedding-0.6B") == (None, None)
    with caplog.at_level(logging.WARNING):
        assert card_license("cc-by-4.0", str(stage1)) == ("cc-by-4.0", "export.license")
    assert "export.license=cc-by-4.0 differs from the license of the base model (mit" in caplog.text


# ---------------------------------------------------------------------------------------------- push_to_hub
class FakeHub:
    """Records HfApi.create_repo / upload_folder calls (no network)."""

    def __init__(self, monkeypatch):
        import huggingface_hub

        self.calls = []

        def create_repo(api, repo_id, **kwargs):
            self.calls.append(("create_repo", repo_id, kwargs))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(api, *, repo_id, folder_path, **kwargs):
            files = sorted(p.name for p in Path(folder_path).iterdir())
            self.calls.append(("upload_folder", repo_id, folder_path, files))
            return "commit-url"

        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)


def test_push_to_hub_uploads_the_exported_folder_to_the_named_repo(tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)
    run, out = make_run(tmp_path), tmp_path / "export"
    export_main([f"run={run}", f"out={out}", "push_to_hub=someone/tiny-student", "private=true"])
    (create, repo, kwargs), (upload, repo2, folder, files) = hub.calls
    assert (create, repo, kwargs["private"], kwargs["exist_ok"]) == (
        "create_repo",
        "someone/tiny-student",
        True,
        True,
    )
    assert (upload, repo2, folder) == ("upload_folder", "someone/tiny-student", str(out))
    assert {"README.md", "model.safetensors", "modules.json", "jina5_encoder.json"} <= set(files)
    assert (
        'SentenceTransformer("someone/tiny-student")' in (out / "README.md").read_text()
    )  # the card names it


def test_push_to_hub_checks_the_repo_id_before_writing_anything(tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)
    with pytest.raises(ValueError, match="owner/name"):
        export_main([f"run={tmp_path / 'not-loaded'}", f"out={tmp_path / 'export'}", "push_to_hub=no-owner"])
    assert not (tmp_path / "export").exists() and not hub.calls


def test_push_to_hub_of_a_multi_adapter_directory(tmp_path, monkeypatch):
    from helpers import add_random_adapter

    hub = FakeHub(monkeypatch)
    enc = Encoder("tiny:bert")
    torch.manual_seed(0)
    add_random_adapter(enc, "retrieval", seed=0)
    enc.save_pretrained(tmp_path / "a")
    export_main([f"runs=[{tmp_path / 'a'}]", f"out={tmp_path / 'combined'}", "push_to_hub=someone/adapters"])
    assert [c[:3] for c in hub.calls if c[0] == "upload_folder"] == [
        ("upload_folder", "someone/adapters", str(tmp_path / "combined"))
    ]


# ---------------------------------------------------------------------------------------------- atomic export
def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _check_export(out: Path, run: Path) -> None:
    """``out`` is a whole export of ``run``'s encoder: sentence-transformers encodes as the Encoder does."""
    enc = Encoder.from_pretrained(run / "encoder")
    for prompt in (None, "query"):
        theirs = st_model(out).encode(TEXTS, prompt_name=prompt, convert_to_numpy=True)
        np.testing.assert_allclose(theirs, enc.encode(TEXTS, prompt=prompt), atol=1e-5)


def test_a_killed_export_leaves_no_folder_and_the_next_export_removes_what_it_left(tmp_path):
    """SIGKILL after the weights are written (before: `out` held config.json + model.safetensors, which
    sentence-transformers loads as another model: mean pooling, no normalisation, no prompts). Now `out`
    does not exist and only the staging folder is left; the next export removes it and writes `out` whole."""
    from helpers import start_paused, wait_paused

    run, out = make_run(tmp_path), tmp_path / "exports" / "model"
    child = start_paused(
        tmp_path / "child",
        "jina5.model.io:export_tokenizer",  # called right after the weights are saved
        1,
        "jina5.export",
        f"run={run}",
        f"out={out}",
        JINA5_CACHE=str(tmp_path / "cache"),
    )
    wait_paused(child, tmp_path / "child", timeout=600)
    child.kill()
    child.wait()
    assert not out.exists(), f"a killed export left {_entries(out)} in {out}"
    (stage,) = out.parent.iterdir()
    assert stage.name.startswith(".model.") and stage.name.endswith(".partial")
    assert "model.safetensors" in _entries(stage / "new")

    export_main([f"run={run}", f"out={out}"])
    assert _entries(out.parent) == ["model"]  # the killed export's staging folder is gone
    _check_export(out, run)


def test_an_export_replaces_a_half_written_folder_and_refuses_one_with_other_files(tmp_path):
    """A folder that older code left half-written (config.json, model.safetensors and safetensors' temp
    file .tmpXXXXXX of an earlier kill) is replaced whole: no stale file stays. A folder holding a file an
    export does not write is refused, named and kept; removing it, as the error says, lets the export run."""
    run = make_run(tmp_path)
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text((run / "encoder" / "config.json").read_text())
    (half / "model.safetensors").write_bytes(b"\0" * 64)
    (half / ".tmpAb12Cd").write_bytes(b"\0" * 4096)
    export_main([f"run={run}", f"out={half}"])
    assert ".tmpAb12Cd" not in _entries(half) and "modules.json" in _entries(half)
    _check_export(half, run)

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (mine / "config.json").write_text("{}")
    with pytest.raises(FileExistsError) as err:
        export_main([f"run={run}", f"out={mine}"])
    assert f"{mine} holds notes.txt, which this write does not produce; it was left as it was" in str(
        err.value
    )
    assert _entries(mine) == ["config.json", "notes.txt"] and _entries(tmp_path).count("mine") == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]  # no staging folder left
    (mine / "notes.txt").unlink()  # "Remove it from <out>"
    export_main([f"run={run}", f"out={mine}"])
    _check_export(mine, run)


def test_a_hub_that_never_answers_fails_within_the_timeout_saying_the_export_is_complete(
    tmp_path, monkeypatch
):
    """A local server accepts every connection and never answers (before: the push hung with no output).
    With hub_timeout=1 the push fails in seconds, saying the local export is complete and only the upload
    failed, with the command that retries the upload alone; running that command uploads the same folder."""
    import shlex
    import socket
    import threading
    import time

    import huggingface_hub

    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept_and_never_answer() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # closed
                return

    threading.Thread(target=accept_and_never_answer, daemon=True).start()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_token")
    run, out = make_run(tmp_path), tmp_path / "export"
    outcome: dict = {}

    def push() -> None:
        try:
            export_main([f"run={run}", f"out={out}", "push_to_hub=someone/tiny-student", "hub_timeout=1"])
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = err

    thread = threading.Thread(target=push, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(timeout=180)
    seconds = time.monotonic() - start
    server.close()  # lets a hung push (the old code) end
    for conn in held:
        conn.close()
    assert not thread.is_alive(), "push_to_hub still hangs after 180 s against a hub that never answers"
    assert held, "the push never reached the local hub"
    from jina5.export import UploadFailed

    error = outcome.get("error")
    assert isinstance(error, UploadFailed), error
    message = str(error)
    assert f"The local export at {out} is complete; only the upload failed." in message
    assert "Timeout" in message and seconds < 120  # create_repo: one request, 1 s (the export: seconds)
    _check_export(out, run)

    hub = FakeHub(monkeypatch)  # the hub answers now: follow the advice
    command = shlex.split(message.split("Retry the upload alone with: ")[1])
    assert command[:3] == ["python", "-m", "jina5.export"]
    export_main(command[3:])
    assert [c[:3] for c in hub.calls if c[0] == "upload_folder"] == [
        ("upload_folder", "someone/tiny-student", str(out))
    ]
