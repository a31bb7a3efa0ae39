"""MTEB adapter: prompt routing by task type, both encoder protocols, model identity, empty texts; the
real mteb (a dev extra; Python >= 3.11) on its own offline mock tasks."""

from __future__ import annotations

import inspect
import sys
import types
from enum import Enum

import numpy as np
import pytest

from jina5.eval.encoding import model_fingerprint
from jina5.eval.mteb_adapter import (
    MTEBEncoder,
    mteb_model_name,
    prompt_type_value,
    route_prompt,
    task_type_of,
    texts_of,
)
from jina5.model.encoder import Encoder

PROMPTS = {"query": "Query: ", "document": "Document: "}


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
    with pytest.raises(ValueError, match="cannot fingerprint a RecordingEncoder"):
        model.fingerprint()  # no weights: mteb would file it under no revision


def test_similarity_of_single_vectors_converts_to_float():
    """mteb's summarization evaluator calls float(model.similarity(u, v)) on two 1-d vectors: a (1, 1)
    numpy array cannot (NumPy 2), a tensor can, as mteb's own cos_sim returns."""
    u, v = np.array([3.0, 4.0]), np.array([4.0, 3.0])
    assert float(MTEBEncoder.similarity(u, v)) == pytest.approx(24 / 25)
    np.testing.assert_allclose(MTEBEncoder.similarity_pairwise(u[None], v[None]), [24 / 25], atol=1e-6)


def test_mteb_model_name():
    assert mteb_model_name("combined-seed0") == "jina5/combined-seed0"
    assert mteb_model_name("tiny:bert") == "jina5/tiny_bert"
    assert mteb_model_name("/runs/a b/enc") == "jina5/runs_a_b_enc"
    with pytest.raises(ValueError, match="cannot make an mteb model name"):
        mteb_model_name("//")


def test_empty_texts_raise_by_default_and_encode_as_sentence_transformers_does(tmp_path):
    from sentence_transformers import SentenceTransformer

    enc = Encoder("tiny:bert", max_length=24, prompts=PROMPTS)
    with pytest.raises(ValueError, match="text 1 is empty"):
        enc.encode(["a text", ""])  # our pipelines: an empty text is a data bug
    with pytest.raises(ValueError, match="text 0 is empty"):
        enc.encode(["  "])
    st = SentenceTransformer(str(enc.save_pretrained(tmp_path / "enc")), device="cpu")
    texts = ["", "a text", "   "]
    for prompt in (None, "document"):
        ours = enc.encode(texts, prompt=prompt, allow_empty=True)
        theirs = st.encode(texts, prompt_name=prompt, convert_to_numpy=True)
        np.testing.assert_allclose(ours, theirs, atol=1e-6)  # "" -> [CLS] [SEP] (+ prefix), pooled
    np.testing.assert_allclose(ours[0], ours[2], atol=1e-6)  # whitespace tokenizes to nothing, like ""
    decoder = Encoder("tiny:qwen3", pooling="last_token", max_length=24)  # no BOS: "" has no token
    with pytest.raises(ValueError, match="text 0 .* has no tokens"):
        decoder.encode([""], allow_empty=True)
    with_eos = Encoder("tiny:qwen3", pooling="last_token", max_length=24, append_eos=True)
    assert with_eos.encode([""], allow_empty=True).shape == (1, 32)  # the EOS alone


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


# ------------------------------------------------------------------------------------------ real mteb


@pytest.fixture
def mteb_offline(monkeypatch):
    """The real mteb (skipped without it), never reaching the hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return pytest.importorskip("mteb")


def main_scores(result) -> dict[str, float]:
    return {r.task_name: round(float(r.get_score()), 6) for r in result.task_results}


def test_model_meta_names_the_model_by_label_and_content_fingerprint(mteb_offline):
    from mteb.models import ModelMeta

    enc = Encoder("tiny:bert", max_length=24, prompts=PROMPTS)
    meta = MTEBEncoder(enc, name="combined-seed0").mteb_model_meta
    assert isinstance(meta, ModelMeta)
    assert (meta.name, meta.revision) == ("jina5/combined-seed0", model_fingerprint(enc))
    assert (meta.embed_dim, meta.max_tokens, meta.similarity_fn_name.value) == (32, 24, "cosine")
    assert meta.n_parameters == sum(p.numel() for p in enc.parameters()) and meta.use_instructions
    assert meta.experiment_kwargs is None and meta.modalities == ["text"]
    small = MTEBEncoder(enc, dim=16, binary=True, name="combined-seed0").mteb_model_meta
    assert small.embed_dim == 16 and small.revision == meta.revision
    assert small.experiment_kwargs == {"embed_dim": 16, "output_dtypes": "binary"}  # its own cache folder
    assert MTEBEncoder(enc).mteb_model_meta.name == "jina5/tiny_bert"  # no label: the encoder's source
    other = Encoder("tiny:bert", max_length=24, prompts={"query": "Q: ", "document": "D: "})
    assert MTEBEncoder(other).mteb_model_meta.revision != meta.revision  # prompts change the scores


def test_two_models_get_their_own_scores_through_mteb_s_default_cache(mteb_offline, tmp_path, monkeypatch):
    """mteb.evaluate with its default result cache (pointed at tmp_path): each model gets the scores of a
    fresh (cache=None) evaluation and is filed under its own name and revision. With an empty ModelMeta
    both were `no_model_name/available` and the second model got the first one's cached scores."""
    from mteb.mocks import MockClassificationTask, MockRetrievalTask

    default_cache = inspect.signature(mteb_offline.evaluate).parameters["cache"].default
    monkeypatch.setattr(default_cache, "cache_path", tmp_path)
    models = {
        "tiny:bert": Encoder("tiny:bert", max_length=32, prompts=PROMPTS),
        "tiny:mpnet": Encoder("tiny:mpnet", max_length=32, prompts=PROMPTS),
    }
    scores = {}
    for source, enc in models.items():
        tasks = [MockRetrievalTask(), MockClassificationTask()]
        fresh = mteb_offline.evaluate(MTEBEncoder(enc), tasks, cache=None, show_progress_bar=False)
        cached = mteb_offline.evaluate(MTEBEncoder(enc), tasks, show_progress_bar=False)  # default cache
        assert main_scores(cached) == main_scores(fresh)
        scores[source] = main_scores(fresh)
        name = mteb_model_name(source)
        assert (cached.model_name, cached.model_revision) == (name, model_fingerprint(enc))
        saved = tmp_path / "results" / name.replace("/", "__") / model_fingerprint(enc)
        assert (saved / "MockClassificationTask.json").exists()
    assert scores["tiny:bert"] != scores["tiny:mpnet"]  # two different models, two different scores


def test_an_empty_document_does_not_abort_an_mteb_run(mteb_offline):
    from mteb.mocks import MockRetrievalTask

    class MockRetrievalWithAnEmptyDocument(MockRetrievalTask):
        def load_data(self, num_proc=None, **kwargs):
            super().load_data(num_proc=num_proc, **kwargs)
            split = self.dataset["default"]["test"]
            corpus = split["corpus"].to_list() + [{"id": "d3", "text": "", "title": ""}]
            split["corpus"] = type(split["corpus"]).from_list(corpus)

    enc = Encoder("tiny:bert", max_length=32, prompts=PROMPTS)
    task = MockRetrievalWithAnEmptyDocument()
    result = mteb_offline.evaluate(MTEBEncoder(enc), task, cache=None, show_progress_bar=False)
    assert 0.0 < result.task_results[0].get_score() <= 1.0


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
