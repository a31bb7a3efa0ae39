"""``jina5.model.st_saved``: a sentence-transformers model read as saved; what cannot be, refused with why.

How ``jina5.evaluate`` reaches it (and the embeddings against ``SentenceTransformer(dir).encode`` for
mean, CLS, last-token and Dense-headed models) is tested in tests/unit/eval/test_models.py."""

from __future__ import annotations

import logging

import pytest
from helpers import st_model_dir

from jina5.model import st_saved
from jina5.model.st_saved import ForeignModelError, SavedSentenceTransformer
from jina5.model.tiny import tiny_model_and_tokenizer


def test_a_pipeline_without_a_sentence_embedding_is_refused(tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer

    model, tokenizer = tiny_model_and_tokenizer("bert")
    model.save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    SentenceTransformer(modules=[Transformer(str(tmp_path / "bert"))], device="cpu").save(
        str(tmp_path / "tokens")
    )
    with pytest.raises(
        ForeignModelError, match=r"modules \(Transformer\(bert\)\) do not encode a text into one"
    ):
        SavedSentenceTransformer.load(str(tmp_path / "tokens"))


def test_new_prompts_without_the_default_drop_it(tmp_path, caplog):
    path = st_model_dir(
        tmp_path / "st", prompts={"query": "q: ", "topic": "t: "}, default_prompt_name="topic"
    )
    model = SavedSentenceTransformer.load(str(path))
    assert model.encoder_config()["default_prompt_name"] == "topic"
    with caplog.at_level(logging.WARNING, logger="jina5.model.st_saved"):
        model.prompts = {"query": "x: "}
    assert model.backbone.default_prompt_name is None and "no default prompt" in caplog.text
    assert (model.encode(["a b"]) == model.backbone.encode(["a b"], prompt="")).all()


def test_a_hub_repo_is_asked_for_its_modules_file(tmp_path, monkeypatch):
    """A hub id (no local directory) is read as saved when its repo has modules.json; a repo without it
    (or an offline lookup of an uncached file: LocalEntryNotFoundError) is a plain transformers model."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    asked = []

    def download(repo_id, filename):
        asked.append((repo_id, filename))
        if repo_id == "someone/st-model":
            return str(tmp_path / filename)
        raise (LocalEntryNotFoundError if repo_id == "offline/uncached" else EntryNotFoundError)("no file")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    assert st_saved.st_file("someone/st-model", "modules.json") == tmp_path / "modules.json"
    assert st_saved.st_file("someone/plain-bert", "modules.json") is None
    assert st_saved.st_file("offline/uncached", "modules.json") is None
    assert asked == [
        (r, "modules.json") for r in ("someone/st-model", "someone/plain-bert", "offline/uncached")
    ]
