"""Encoder save/load, the sentence-transformers files, and the pinned content fingerprint.

The fingerprint is the key of the teacher cache (``Teacher.fingerprint``) and of the evaluation cache
(``jina5.eval.suite``): if it moves, every cached teacher vector and evaluation result is silently
recomputed (or, worse, two different models share a key). The hashes below were computed with
torch 2.13 / transformers 5.24 / peft 0.21; a change that moves them moves the caches. If a library upgrade moves them (a new config key, another
initialisation), say so where the pin is updated.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import add_random_adapter

from jina5.model.encoder import Encoder
from jina5.model.io import VOLATILE_CONFIG, content_fingerprint, no_pooler_kwargs

TEXTS = ["the cat sat on the mat", "stock markets fell", "a b c", "rain tomorrow"]


def pruned_encoder() -> Encoder:
    return Encoder("tiny:bert", keep_layers=[0, 2, 4], pooling="cls", prompts={"query": "q: "}, max_length=40)


def encoder_with_adapters() -> Encoder:
    """tiny:bert with two seeded LoRA adapters whose B is random (a fresh adapter changes nothing)."""
    enc = Encoder("tiny:bert", prompts={"query": "Query: ", "document": "Document: "})
    for i, task in enumerate(["retrieval", "clustering"]):
        torch.manual_seed(100 + i)  # lora_A's initialisation
        add_random_adapter(enc, task, seed=i)
    return enc


TEACHER = {"skip_settings": ("source", "prompts")}  # as Teacher.fingerprint
EVAL = {"skip_config": (*VOLATILE_CONFIG, "architectures")}  # as the evaluation cache key
PINNED = [
    ("tiny:bert", {}, "b65cb674dd3ac46f47aec65592796e946b2653a2ff03284e3e02cb8b00a19a86"),
    ("tiny:bert", TEACHER, "79b1be33430c9d3642b1564c22530dec824c000db258a308ede43dd36aba716d"),
    ("tiny:bert", EVAL, "96336c097e9bc965ec7725cdc33c7e2974923ea86f710d9cdf5b4160df30a3af"),
    ("tiny:qwen3", {}, "e07f895fca60f31a496d88032572b8815461f53767f4da23db6e97b96e10ebf2"),
    ("tiny:qwen3", TEACHER, "e462b94d7e590f6512a805480a7de0336ed6bd2847e5c6b19e1ba7991ccdeccb"),
    ("pruned", {}, "dd6acf3decd40541820773dcf012fc2b43e7de99361cfeddd77e0e52e41cd047"),
    ("pruned", EVAL, "8b6b13215bba3c35c6176f82343e90602ef1cbe98db4df3b84c944f08f7b8f92"),
    ("adapters", {}, "eb85699dcacb8069c1241339e4d598add6dcd64c12098668f8c6ee877d0454db"),
    ("adapters", EVAL, "931c7f6069071a65dc93f595f6b411a92ea72815c118d5236a1fcde47dca8eeb"),
]


def build(name: str) -> Encoder:
    if name == "pruned":
        return pruned_encoder()
    if name == "adapters":
        return encoder_with_adapters()
    return Encoder(name, **({"pooling": "last_token", "append_eos": True} if "qwen3" in name else {}))


@pytest.mark.parametrize("name,skip,want", PINNED)
def test_content_fingerprint_is_pinned(name, skip, want):
    assert content_fingerprint(build(name), **skip) == want


@pytest.mark.parametrize("name,skip,want", [p for p in PINNED if p[1] in (TEACHER, EVAL)])
def test_bf16_encodes_have_their_own_fingerprint_and_fp32_keeps_the_pinned_one(name, skip, want):
    """The compute precision (jina5.model.precision) keys the teacher and evaluation caches: fp32 adds
    nothing (caches made before the policy stay valid), bf16 gives another key."""
    enc = build(name)
    enc.compute_precision = "fp32"
    assert content_fingerprint(enc, **skip) == want
    enc.compute_precision = "bf16"
    bf16 = content_fingerprint(enc, **skip)
    assert bf16 != want
    settings = {k: v for k, v in enc.encoder_config().items() if k not in skip.get("skip_settings", ())}
    assert "compute_precision" not in settings  # a run-time choice: not saved with the encoder
    if enc.adapters:  # a task view encodes with its encoder's precision, and its key says so
        view = enc.for_task(enc.adapters[0])
        enc.compute_precision = "fp32"
        fp32_view = content_fingerprint(view, **skip)
        enc.compute_precision = "bf16"
        assert content_fingerprint(view, **skip) != fp32_view


def test_fingerprint_sees_weights_and_settings_but_not_the_source():
    base = content_fingerprint(Encoder("tiny:bert"))
    assert content_fingerprint(Encoder("tiny:bert", max_length=255)) != base
    nudged = Encoder("tiny:bert")
    with torch.no_grad():
        nudged.backbone.embeddings.word_embeddings.weight[0, 0] += 1e-6
    assert content_fingerprint(nudged) != base
    renamed = Encoder("tiny:bert")
    renamed.source = "elsewhere"
    assert content_fingerprint(renamed) == base


def test_sentence_transformers_and_settings_files_are_pinned(tmp_path):
    """Our settings file byte for byte; the sentence-transformers files (written by its own save, so
    their layout is its version's) by content."""
    path = pruned_encoder().save_pretrained(tmp_path / "enc")
    settings = {
        "pooling": "cls",
        "prompts": {"query": "q: "},
        "max_length": 40,
        "append_eos": False,
        "padding_side": "right",
        "normalize": True,
        "source": "tiny:bert",
    }
    # key order, indent=2, no trailing newline: unchanged since before sentence-transformers wrote its files
    assert (path / "jina5_encoder.json").read_text() == json.dumps(settings, indent=2)

    def read(name: str):
        return json.loads((path / name).read_text())

    modules = read("modules.json")
    assert [(m["path"], m["type"].rsplit(".", 1)[1]) for m in modules] == [
        ("", "Transformer"),
        ("1_Pooling", "Pooling"),
        ("2_Normalize", "Normalize"),
    ]
    assert read("1_Pooling/config.json") == {
        "embedding_dimension": 32,
        "pooling_mode": "cls",
        "include_prompt": True,
    }
    transformer = read("sentence_bert_config.json")
    assert (transformer["max_seq_length"], transformer["do_lower_case"]) == (40, False)
    assert transformer["model_kwargs"] == {"add_pooling_layer": False}  # saved without the [CLS] pooler
    st_config = read("config_sentence_transformers.json")
    assert st_config["prompts"]["query"] == "q: " and st_config["prompts"].get("document", "") == ""
    assert (st_config["default_prompt_name"], st_config["similarity_fn_name"]) == (None, "cosine")
    assert (path / "README.md").read_text().startswith("---\n")  # sentence-transformers' model card


def test_unnormalised_encoder_writes_no_normalize_module(tmp_path):
    path = Encoder("tiny:qwen3", pooling="last_token", normalize=False).save_pretrained(tmp_path / "enc")
    modules = json.loads((path / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling"]
    assert not (path / "2_Normalize").exists()
    assert json.loads((path / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "lasttoken"


def test_save_and_load_round_trip_is_exact(tmp_path):
    enc = pruned_encoder()
    enc.save_pretrained(tmp_path / "enc")
    # the tiny backbones are built with eager attention; a plain load picks sdpa (1 ulp apart)
    again = Encoder.from_pretrained(tmp_path / "enc", attn_implementation="eager")
    assert again.pooling == "cls" and again.prompts == {"query": "q: "} and again.max_length == 40
    assert again.backbone.config.num_hidden_layers == 3
    assert again.state_dict().keys() == enc.state_dict().keys()
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in again.state_dict().items())
    np.testing.assert_array_equal(enc.encode(TEXTS, prompt="query"), again.encode(TEXTS, prompt="query"))
    assert content_fingerprint(again) == content_fingerprint(enc)  # enc's config was filled in by saving
    assert Encoder.from_pretrained(tmp_path / "enc", max_length=12).max_length == 12  # kwargs override
    # saved without the unused pooler, and rebuilt without one (no "missing weights" on load)
    assert not any(k.startswith("pooler.") for k in again.backbone.state_dict())
    assert no_pooler_kwargs(tmp_path / "enc") == {"add_pooling_layer": False}
    Encoder("tiny:qwen3").save_pretrained(tmp_path / "qwen3")
    assert no_pooler_kwargs(tmp_path / "qwen3") == {}  # a decoder takes no such argument


def test_saved_directory_loads_in_sentence_transformers_with_the_same_vectors(tmp_path):
    from sentence_transformers import SentenceTransformer

    enc = Encoder("tiny:bert", prompts={"query": "Query: "}, max_length=24)
    st = SentenceTransformer(str(enc.save_pretrained(tmp_path / "enc")), device="cpu")
    for prompt in (None, "query"):
        theirs = st.encode(TEXTS, prompt_name=prompt, convert_to_numpy=True)
        np.testing.assert_allclose(theirs, enc.encode(TEXTS, prompt=prompt), atol=1e-6)


def test_adapter_directory_restores_adapters_and_the_active_one(tmp_path):
    enc = encoder_with_adapters()
    enc.set_task("retrieval")
    path = enc.save_pretrained(tmp_path / "enc")
    assert not (path / "modules.json").exists()  # ST would load the base model without any adapter
    assert sorted(p.name for p in (path / "adapters").iterdir() if p.is_dir()) == ["clustering", "retrieval"]
    again = Encoder.from_pretrained(path, attn_implementation="eager")
    assert again.adapters == ["retrieval", "clustering"] and again.task == "retrieval"
    for task in again.adapters:
        np.testing.assert_array_equal(
            again.encode(TEXTS, task=task, prompt="query"), enc.encode(TEXTS, task=task, prompt="query")
        )
    # the loaded config names its architecture and dtype; the in-memory one did not (the base model is
    # saved from a copy, so unlike a plain encoder's, enc's config was not filled in by saving)
    loose = {"skip_config": (*VOLATILE_CONFIG, "architectures", "dtype")}
    assert content_fingerprint(again, **loose) == content_fingerprint(enc, **loose)


def test_listed_adapter_missing_on_disk_is_named(tmp_path):
    path = encoder_with_adapters().save_pretrained(tmp_path / "enc")
    (path / "adapters" / "clustering" / "adapter_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="'clustering'"):
        Encoder.from_pretrained(path)
