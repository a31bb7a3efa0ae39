"""Data boundaries of local sources: what a CSV or JSON file can hold that the schema cannot,
and sources with no usable row. Each case gives a clear error naming the file (and row) or is dropped
under its own counted reason; nothing is dropped silently or fails deep in training."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from jina5.data.datamodule import PairDataModule
from jina5.data.io import DataFormatError
from jina5.data.schema import dataset_stats
from jina5.data.sources import EmptySourceError, load_source

STS = {"s1": "query", "s2": "document", "sim": "score"}
QA = {"q": "query", "d": "document"}


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINA5_CACHE", str(tmp_path / "cache"))


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


class NoTeacher:
    """A teacher that fails the test if the data module asks anything of it."""

    def __getattr__(self, name: str):
        raise AssertionError(f"teacher.{name} used before the data was checked")


# ---------------------------------------------------------------------------------- numeric strings (CSV)


def test_numeric_score_strings_from_csv_are_floats(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_text(
        "s1,s2,sim\na cat,a kitten,0.5\na dog,a car, 3 \nsky,sea,1e-1\nx,y,-2\n", encoding="utf-8"
    )
    ds = load_source(str(path), STS, task="sts")
    assert ds["score"] == [0.5, 3.0, 0.1, -2.0]
    assert ds["query"] == ["a cat", "a dog", "sky", "x"]


@pytest.mark.parametrize("bad", ["abc", "nan", "inf", "-Infinity", "0.5.1"])
def test_a_score_that_is_no_finite_number_names_file_record_and_value(tmp_path, bad):
    path = tmp_path / "scores.csv"
    path.write_text(f"s1,s2,sim\na,b,0.5\nc,d,{bad}\n", encoding="utf-8")
    with pytest.raises(
        DataFormatError, match=rf"scores\.csv: record 1, column 'sim': .*finite number.*'{bad}'"
    ):
        load_source(str(path), STS, task="sts")


@pytest.mark.parametrize("bad", [True, float("inf"), [0.5]])
def test_a_json_score_that_is_no_finite_number_names_file_and_record(tmp_path, bad):
    path = tmp_path / "scores.jsonl"
    path.write_text(
        json.dumps({"s1": "a", "s2": "b", "sim": 1})
        + "\n"
        + json.dumps({"s1": "c", "s2": "d", "sim": bad})
        + "\n"
    )
    with pytest.raises(DataFormatError, match=r"scores\.jsonl: record 1, column 'sim': .*finite number"):
        load_source(str(path), STS, task="sts")


# ---------------------------------------------------------------------------------- non-string texts


def test_a_text_that_is_not_a_string_is_dropped_under_its_own_reason(tmp_path, caplog):
    path = _jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"q": "first question", "d": "a real answer"},
            {"q": "second question", "d": 12},
            {"q": "third question", "d": ["a", "list"]},
            {"q": {"not": "text"}, "d": "an answer"},
            {"q": "fifth question", "d": "  "},
            {"q": "sixth question", "d": None},
        ],
    )
    with caplog.at_level(logging.INFO, logger="jina5.data.sources"):
        ds = load_source(str(path), QA, task="retrieval", drop_incomplete=True)
    assert ds["document"] == ["a real answer"]
    assert dataset_stats(ds)["filtered"] == {
        "non-string document": 2,
        "non-string query": 1,
        "empty document": 2,
    }
    assert "mixed: dropped 5 of 6 rows" in caplog.text and "'non-string document': 2" in caplog.text
    with pytest.raises(ValueError, match=r"dataset 'mixed', row 1, column 'document': expected str, got int"):
        load_source(str(path), QA, task="retrieval")  # without drop_incomplete: the first bad row raises


# ---------------------------------------------------------------------------------- empty sources


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json", "empty.csv"])
def test_an_empty_source_names_itself(tmp_path, name):
    path = tmp_path / name
    path.write_text("[]" if name.endswith(".json") else "\n", encoding="utf-8")
    file = re.escape(name)
    for columns in (QA, None):
        with pytest.raises(EmptySourceError, match=rf"dataset 'mine'.*{file}.*no rows.*{file}: no records"):
            load_source(str(path), columns, task="retrieval", dataset="mine")


def test_a_source_whose_rows_are_all_dropped_names_itself_and_the_counts(tmp_path):
    path = _jsonl(tmp_path / "numbers.jsonl", [{"q": "a", "d": 1}, {"q": "b", "d": 2.5}, {"q": "c", "d": ""}])
    with pytest.raises(
        EmptySourceError,
        match=r"dataset 'nums'.*numbers\.jsonl.*0 usable rows of 3.*'non-string document': 2.*'empty document': 1",
    ):
        load_source(str(path), QA, task="retrieval", dataset="nums", drop_incomplete=True)


def test_an_empty_file_in_a_directory_is_named_and_the_others_load(tmp_path, caplog):
    folder = tmp_path / "parts"
    folder.mkdir()
    _jsonl(folder / "a.jsonl", [{"q": "a question", "d": "an answer"}])
    (folder / "b.jsonl").write_text("", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="jina5.data.sources"):
        ds = load_source(str(folder), QA, task="retrieval")
    assert ds["query"] == ["a question"]
    assert "b.jsonl: no records" in caplog.text


@pytest.mark.parametrize(
    ("content", "reason"),
    [("", r"empty\.jsonl: no records"), ('{"q": 1, "d": 2}\n', r"0 usable rows of 1.*'non-string query': 1")],
)
def test_the_data_module_names_an_empty_source_before_any_teacher_work(tmp_path, content, reason):
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    dm = PairDataModule(
        {"bbc": {"max_rows": 8}, "mine": {"source": str(path), "columns": QA, "task": "retrieval"}},
        encoder=None,
        teacher=NoTeacher(),
    )
    with pytest.raises(EmptySourceError, match=rf"dataset 'mine'.*empty\.jsonl.*{reason}"):
        dm.setup("fit")


def test_a_pair_dataset_left_without_rows_is_named(tmp_path):
    """Rows that load but make no pair (unlabeled one-sentence documents) leave an empty table: named."""
    path = _jsonl(tmp_path / "short.jsonl", [{"text": "One sentence only."}, {"text": "Another one"}])
    dm = PairDataModule(
        {
            "short": {
                "source": str(path),
                "columns": {"text": "document"},
                "task": "unlabeled",
                "unlabeled": True,
            }
        },
        encoder=None,
        teacher=NoTeacher(),
    )
    with pytest.raises(EmptySourceError, match=r"dataset 'short'.*short\.jsonl.*no usable pair.*2 rows"):
        dm.setup("fit")


# ---------------------------------------------------------------------------------- header-only CSV


def test_a_header_only_csv_says_it_has_no_rows(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("q,d\n", encoding="utf-8")
    with pytest.raises(EmptySourceError, match=r"header\.csv: has a header but no rows") as err:
        load_source(str(path), QA, task="retrieval")
    assert "missing column" not in str(err.value)
    with pytest.raises(
        DataFormatError, match=r"header\.csv: missing column 'passage' \(columns: \['d', 'q'\]\)"
    ):
        load_source(str(path), {"q": "query", "passage": "document"}, task="retrieval")  # the header is read
