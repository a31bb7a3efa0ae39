"""The languages of the training mix (``jina5.data.languages``): ISO 639 codes from the rows' ``language``
column, a source's own ``language`` (or ``data.language``), in the data manifest with the hub id of an
``hf:`` source read from the hub."""

from __future__ import annotations

import json
import logging

import datasets
import pytest
from helpers import compose
from omegaconf import OmegaConf

from jina5.data import sources
from jina5.data.manifest import mix_manifest
from jina5.data.mix import mix_specs
from jina5.data.pairs import DatasetSpec, load_pair_table

# chatterbot-corpus 1.3.3's language directories, by hand: bengali chinese dutch english french german hebrew
# hindi hinglish indonesian italian japanese korean marathi oriya persian portuguese russian spanish swedish
# tamil telugu thai traditionalchinese turkish ukrainian urdu yoruba
CHATTERBOT = ["bn", "zh", "nl", "en", "fr", "de", "he", "hi", "id", "it", "ja", "ko", "mr", "or", "fa", "pt"]
CHATTERBOT += ["ru", "es", "sv", "ta", "te", "th", "tr", "uk", "ur", "yo"]  # hinglish: hi + en


def test_codes_stay_names_become_codes_and_an_unknown_value_is_kept_with_a_warning(caplog):
    from jina5.data.languages import language_codes

    values = ["english", "German", "", None, "pt-BR", "fil", "hinglish", "klingon-ish", "en"]
    with caplog.at_level(logging.WARNING):
        assert language_codes(values, "mine") == ["de", "en", "fil", "hi", "klingon-ish", "pt-BR"]
    assert "dataset 'mine': row language 'klingon-ish' is neither an ISO 639 code" in caplog.text


def test_bundled_corpora_carry_their_languages_into_the_manifest():
    specs = [
        DatasetSpec("bbc", max_rows=20),
        DatasetSpec("parlspeech_de", max_rows=20),
        DatasetSpec("chatterbot", max_rows=40),
    ]
    tables = [load_pair_table(spec) for spec in specs]
    manifest = mix_manifest(tables, [len(t) for t in tables], [1.0, 1.0, 1.0], 0, 1, 0, 0, 0)
    entries = {e["name"]: e for e in manifest["datasets"]}
    assert entries["bbc"]["languages"] == ["en"] and entries["parlspeech_de"]["languages"] == ["de"]
    assert entries["chatterbot"]["languages"] == sorted(CHATTERBOT)  # its train split's languages
    assert all(e["hub_id"] is None for e in entries.values())


@pytest.fixture
def hub_pairs(tmp_path, monkeypatch):
    """``hf:org/pairs:train`` served from memory (no network), as ``datasets.load_dataset`` would."""
    rows = {"q": [f"question {i}" for i in range(8)], "d": [f"answer {i}." for i in range(8)]}

    def fake_load(name, config, split, cache_dir, streaming):
        assert (name, split) == ("org/pairs", "train")
        return datasets.Dataset.from_dict(rows)

    monkeypatch.setattr(sources.datasets, "load_dataset", fake_load)
    return {"source": "hf:org/pairs:train", "columns": {"q": "query", "d": "document"}, "task": "retrieval"}


def test_a_source_gets_its_language_from_its_spec_or_the_data_config(hub_pairs):
    (unknown,) = mix_specs({"unknown": hub_pairs})
    own, default = mix_specs({"own": {**hub_pairs, "language": "de"}, "default": hub_pairs}, language="en")
    tables = [load_pair_table(spec) for spec in (unknown, own, default)]
    manifest = mix_manifest(tables, [8, 8, 8], [1.0, 1.0, 1.0], 0, 1, 0, 0, 0)
    assert [(e["name"], e["languages"], e["hub_id"]) for e in manifest["datasets"]] == [
        ("unknown", [], "org/pairs"),  # no language known: the card says so
        ("own", ["de"], "org/pairs"),
        ("default", ["en"], "org/pairs"),
    ]
    json.dumps(manifest)  # the manifest stays JSON


def test_a_bundled_corpus_refuses_a_language_of_its_own():
    with pytest.raises(
        ValueError, match="dataset 'bbc': language is for a source's rows; the bundled corpus"
    ):
        DatasetSpec("bbc", language="de")


def test_every_hub_data_config_names_the_language_of_its_sources():
    for data in (
        "paper_stage1",
        "paper_adapter_retrieval",
        "paper_adapter_classification",
        "paper_long_context",
    ):
        cfg = OmegaConf.to_container(compose([f"data={data}"]).data, resolve=True)
        assert cfg["language"] == "en", data
        specs = mix_specs(cfg["datasets"], language=cfg["language"])
        assert {s.language for s in specs if s.source} == {"en"}, data
