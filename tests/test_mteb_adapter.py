"""MTEB adapter: prompt routing by task type, both encoder protocols; the real mteb only if installed."""

from __future__ import annotations

import sys
import types
from enum import Enum

import numpy as np
import pytest

from jina5.encoder import Encoder
from jina5.eval.mteb_adapter import MTEBEncoder, prompt_type_value, route_prompt, task_type_of, texts_of


class PromptType1(str, Enum):  # mteb 1.x
    query = "query"
    passage = "passage"


class PromptType2(str, Enum):  # mteb 2.x
    query = "query"
    document = "document"


class FakeMeta:
    def __init__(self, type_: str, name: str = "FakeTask"):
        self.type = type_
        self.name = name


class RecordingEncoder:
    """Encoder stand-in: records the prompt of each call; vector = one-hot of the prompt."""

    prompts = {"query": "Query: ", "document": "Document: "}
    dim = 4

    def __init__(self):
        self.calls: list[tuple[int, str | None]] = []

    def encode(self, texts, prompt=None, batch_size=64):
        self.calls.append((len(texts), prompt))
        row = {"query": [1, 0, 0, 1], "document": [0, 1, 0, 1], None: [0, 0, 1, 1]}[prompt]
        return np.tile(np.asarray(row, dtype=np.float32) / np.sqrt(2), (len(texts), 1))


@pytest.mark.parametrize(
    ("task_type", "side", "expected"),
    [
        ("Retrieval", PromptType1.query, "query"),
        ("Retrieval", PromptType1.passage, "document"),
        ("Retrieval", PromptType2.document, "document"),
        ("Reranking", PromptType2.query, "query"),
        ("InstructionRetrieval", "query", "query"),
        ("Retrieval", None, "document"),
        ("STS", PromptType1.query, "document"),  # symmetric tasks: "Document: " on every text
        ("Classification", None, "document"),
        ("Clustering", PromptType2.query, "document"),
        ("PairClassification", PromptType1.passage, "document"),
        ("BitextMining", None, "document"),
        (None, PromptType2.query, "document"),
    ],
)
def test_route_prompt(task_type, side, expected):
    assert route_prompt(task_type, side) == expected


def test_prompt_type_values_and_errors():
    assert prompt_type_value(PromptType1.passage) == "document" and prompt_type_value(None) is None
    with pytest.raises(ValueError, match="unknown mteb prompt_type"):
        prompt_type_value("instruction")


def test_texts_of_lists_and_dataloader_batches():
    assert texts_of(["a", "b"]) == ["a", "b"]
    assert texts_of(("a",)) == ["a"]
    assert texts_of([{"text": ["a", "b"]}, {"text": ["c"], "title": ["t"]}]) == ["a", "b", "c"]
    with pytest.raises(TypeError, match="cannot read texts"):
        texts_of([{"image": [1]}])


def test_encode_mteb2_protocol_routes_by_task_metadata():
    enc = RecordingEncoder()
    model = MTEBEncoder(enc)
    batches = [{"text": ["q1", "q2"]}, {"text": ["q3"]}]
    q = model.encode(
        batches,
        task_metadata=FakeMeta("Retrieval"),
        hf_split="test",
        hf_subset="default",
        prompt_type=PromptType2.query,
    )
    d = model.encode(
        [{"text": ["d1"]}],
        task_metadata=FakeMeta("Retrieval"),
        hf_split="test",
        hf_subset="default",
        prompt_type=PromptType2.document,
    )
    s = model.encode(
        [{"text": ["s1", "s2"]}],
        task_metadata=FakeMeta("STS"),
        hf_split="test",
        hf_subset="default",
        prompt_type=PromptType2.query,
    )
    assert enc.calls == [(3, "query"), (1, "document"), (2, "document")]
    assert q.shape == (3, 4) and d.shape == (1, 4) and s.shape == (2, 4)
    assert model.similarity(q, d).shape == (3, 1)
    np.testing.assert_allclose(model.similarity_pairwise(s, s), np.ones(2), atol=1e-6)
    assert model.mteb_model_meta is None  # mteb fills an empty one


def test_encode_mteb1_protocol_looks_the_task_type_up_lazily(monkeypatch):
    fake = types.ModuleType("mteb")
    fake.get_task = lambda name: types.SimpleNamespace(
        metadata=FakeMeta({"SciFact": "Retrieval"}.get(name, "STS"))
    )
    monkeypatch.setitem(sys.modules, "mteb", fake)
    enc = RecordingEncoder()
    model = MTEBEncoder(enc)
    model.encode(["q"], task_name="SciFact", prompt_type=PromptType1.query)
    model.encode(["d"], task_name="SciFact", prompt_type=PromptType1.passage)
    model.encode(["a", "b"], task_name="STS12")
    assert enc.calls == [(1, "query"), (1, "document"), (2, "document")]
    assert task_type_of({"type": "Clustering"}) == "Clustering" and task_type_of() is None


def test_dim_binary_and_a_missing_prompt_on_a_real_encoder():
    enc = Encoder("tiny:bert", max_length=16, prompts={"document": "Document: "})
    full = MTEBEncoder(enc).encode(["hello there"], task_metadata=FakeMeta("Retrieval"), prompt_type="query")
    np.testing.assert_allclose(full, enc.encode(["hello there"]), atol=1e-6)  # no query prompt: no prefix
    doc = MTEBEncoder(enc, dim=8).encode(["hello there"], task_metadata=FakeMeta("STS"))
    np.testing.assert_allclose(doc, enc.encode(["hello there"], prompt="document", dim=8), atol=1e-6)
    signs = MTEBEncoder(enc, dim=8, binary=True).encode(["hello there"], task_metadata=FakeMeta("STS"))
    assert set(np.unique(signs)) <= {-1.0, 1.0} and signs.shape == (1, 8)
    np.testing.assert_array_equal(signs > 0, doc > 0)


def test_real_mteb_protocol_and_task_types():
    mteb = pytest.importorskip("mteb")
    enc = RecordingEncoder()
    model = MTEBEncoder(enc)
    prompt_type = getattr(getattr(mteb, "types", None), "PromptType", None)
    if prompt_type is None:  # mteb 1.x
        from mteb.encoder_interface import PromptType as prompt_type
    task = mteb.get_task("SciFact")
    assert task.metadata.type == "Retrieval"
    model.encode(["q"], task_metadata=task.metadata, prompt_type=prompt_type.query)
    model.encode(["d"], task_name="SciFact", prompt_type=list(prompt_type)[-1])
    model.encode(["a"], task_name="STS12", prompt_type=prompt_type.query)
    assert enc.calls == [(1, "query"), (1, "document"), (1, "document")]
