"""``jina5.eval.models.load_model``: the device the encoder evaluates on (issue 25: ``jina5.evaluate`` and
``jina5.mteb`` never moved the encoder to a GPU)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import jina5.model.precision as precision
from jina5.eval.models import load_model
from jina5.model.encoder import Encoder


def _cfg(**over):
    return OmegaConf.create(
        {"model": "tiny:bert", "pooling": "mean", "precision": "auto", "baselines": {}, **over}
    )


@pytest.mark.parametrize(
    ("cuda", "device", "moved", "path"),
    [
        (True, "auto", torch.device("cuda"), "bf16"),  # auto: the GPU, and the precision resolved there
        (True, None, torch.device("cuda"), "bf16"),  # a config without the key: auto
        (True, "cuda:1", torch.device("cuda", 1), "bf16"),
        (False, "auto", None, "fp32"),  # no GPU: stays on the CPU, resolved for the CPU
        (True, "cpu", None, "fp32"),
    ],
)
def test_the_encoder_is_moved_to_the_eval_device(monkeypatch, cuda, device, moved, path):
    moves: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(Encoder, "to", lambda self, d: moves.append(torch.device(d)) or self)
    # stand-in hardware: bf16 on the GPU, none on this CPU
    monkeypatch.setattr(precision, "fast_bf16", lambda device_type: (device_type == "cuda", "stand-in"))
    cfg = _cfg() if device is None else _cfg(device=device)
    loaded = load_model(cfg)
    assert moves == ([] if moved is None else [moved])
    assert loaded.encoder.compute_precision == path


# ------------------------------------------------------------- sentence-transformers models read as saved
TEXTS = ["a cat sat on the mat.", "stocks fell sharply", "the quick brown fox jumps", "rain"]
PROMPTS = {"query": "q: ", "document": "d: ", "topic": "t: "}


def _st_cfg(model, **over):
    return _cfg(model=str(model), device="cpu", precision="fp32", **over)


def _theirs(path, prompt):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu").encode(TEXTS, prompt_name=prompt)


@pytest.mark.parametrize(
    ("backbone", "pooling", "dense", "normalize"),
    [
        ("tiny:bert", "mean", None, False),
        ("tiny:bert", "cls", None, True),
        ("tiny:qwen3", "lasttoken", None, True),
        ("tiny:bert", "mean", (32, 16), True),  # Dense(32 -> 16, tanh) + Normalize
    ],
)
def test_a_sentence_transformers_dir_encodes_as_sentence_transformers_does(
    tmp_path, backbone, pooling, dense, normalize
):
    from helpers import st_model_dir

    from jina5.eval.encoding import MemoEncode

    path = st_model_dir(
        tmp_path / "st", backbone, pooling, dense, normalize, prompts=PROMPTS, default_prompt_name="topic"
    )
    loaded = load_model(_st_cfg(path))
    memo = MemoEncode(loaded.encoder, batch_size=3)  # the suite's encoding path
    for prompt in ("query", "document", "topic", None):  # None: the saved default prompt ("topic")
        np.testing.assert_allclose(memo(TEXTS, prompt=prompt), _theirs(path, prompt), atol=1e-5)
    assert loaded.kind == "sentence_transformers"
    assert loaded.encoder.dim == (dense[1] if dense else 32)


@pytest.mark.integration
def test_minilm_with_a_dense_head_is_scored_at_its_128_d_not_as_its_backbone(tmp_path, caplog):
    """The issue's case: MiniLM + Dense(384 -> 128, tanh) + Normalize was logged and scored as the 384-d
    MiniLM; and a bundled name with modules.json is read as saved too."""
    from helpers import st_model_dir

    from jina5.assets import resolve_model

    minilm = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    path = st_model_dir(tmp_path / "minilm-dense", minilm, "mean", (384, 128), max_seq_length=256)
    with caplog.at_level(logging.INFO, logger="jina5.model.st_saved"):
        loaded = load_model(_st_cfg(path))
    assert loaded.encoder.dim == 128
    assert "Transformer(bert) -> Pooling(mean) -> Dense(384->128, Tanh) -> Normalize, 128-d" in caplog.text
    np.testing.assert_allclose(loaded.encoder.encode(TEXTS), _theirs(path, None), atol=1e-5)
    bundled = load_model(_st_cfg("sentence-transformers/all-MiniLM-L6-v2"))
    assert (bundled.kind, bundled.encoder.dim) == ("sentence_transformers", 384)
    np.testing.assert_allclose(bundled.encoder.encode(TEXTS), _theirs(minilm, None), atol=1e-5)


def test_the_fingerprint_covers_every_module_and_the_overrides_apply(tmp_path):
    from helpers import st_model_dir

    from jina5.eval.encoding import model_fingerprint

    path = st_model_dir(tmp_path / "st", dense=(32, 16))
    loaded = load_model(_st_cfg(path, max_length=12, prompts={"query": "x: "}))
    assert loaded.encoder.max_length == 12 and loaded.encoder.prompts == {"query": "x: "}
    before = model_fingerprint(loaded.encoder)
    with torch.no_grad():
        loaded.encoder.backbone[2].linear.weight.add_(1.0)  # the Dense head alone
    assert model_fingerprint(loaded.encoder) != before


def test_a_model_that_cannot_be_read_as_saved_is_refused_not_scored_as_its_backbone(tmp_path):
    import json

    from helpers import st_model_dir

    sparse = st_model_dir(tmp_path / "sparse")
    config = json.loads((sparse / "config_sentence_transformers.json").read_text())
    (sparse / "config_sentence_transformers.json").write_text(
        json.dumps({**config, "model_type": "SparseEncoder"})
    )
    with pytest.raises(ValueError, match="a sentence-transformers SparseEncoder .* dense text embeddings"):
        load_model(_st_cfg(sparse))
    custom = st_model_dir(tmp_path / "custom")
    modules = json.loads((custom / "modules.json").read_text())
    modules[1]["type"] = "someones_package.pooling.CustomPooling"  # needs code sentence-transformers lacks
    (custom / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(
        ValueError, match="(?s)cannot load it as saved .*CustomPooling.* refused rather than scoring"
    ):
        load_model(_st_cfg(custom))


def test_a_model_trained_with_sentence_transformers_losses_loads_as_trained(tmp_path):
    """Issue 24: a sentence-transformers model trained with its EmbedDistillLoss (with a projection to
    the teacher's width) and GlobalOrthogonalRegularizationLoss, saved, is evaluated as it encodes."""
    from helpers import st_model_dir
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import (
        EmbedDistillLoss,
        GlobalOrthogonalRegularizationLoss,
    )

    model = SentenceTransformer(str(st_model_dir(tmp_path / "base", dense=(32, 16))), device="cpu")
    distill = EmbedDistillLoss(model, distance_metric="cosine", projection_dim=24)
    gor = GlobalOrthogonalRegularizationLoss(model)
    optimizer = torch.optim.AdamW([*model.parameters(), *distill.projection.parameters()], lr=1e-2)
    teacher = torch.randn(len(TEXTS), 24, generator=torch.Generator().manual_seed(0))
    dense_before = model[2].linear.weight.detach().clone()
    model.train()
    for _ in range(3):
        features = model.tokenize(TEXTS)
        loss = distill([features], teacher) + sum(gor([features]).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not torch.equal(model[2].linear.weight, dense_before)  # it trained
    model.save(str(tmp_path / "trained"))
    loaded = load_model(_st_cfg(tmp_path / "trained"))
    assert loaded.encoder.dim == 16
    np.testing.assert_allclose(loaded.encoder.encode(TEXTS), _theirs(tmp_path / "trained", None), atol=1e-5)


def test_a_graph_backend_evaluates_the_exported_graph(tiny_graphs, monkeypatch):
    """``backend=onnx|openvino quantize=none|int8``: the directory's graph computes, filed under its own
    experiment; ``precision=auto`` is fp32 for onnxruntime, openvino's precision hint where bf16 is fast."""
    from jina5.model.graph_runtime import GraphBackbone, graph_file

    monkeypatch.setattr(precision, "fast_bf16", lambda device_type: (True, "stand-in"))
    onnx = load_model(_cfg(model=str(tiny_graphs), backend="onnx", quantize="int8", max_length=12))
    assert (onnx.kind, onnx.name, onnx.experiment) == ("graph", str(tiny_graphs), "tiny-bert-onnx-int8")
    assert onnx.graph == {"backend": "onnx", "quantize": "int8", "file": graph_file("onnx", "int8")}
    assert isinstance(onnx.encoder.backbone, GraphBackbone)
    assert onnx.encoder.backbone.path == tiny_graphs / graph_file("onnx", "int8")
    assert onnx.encoder.compute_precision == "fp32" and onnx.encoder.max_length == 12
    ov = load_model(_cfg(model=str(tiny_graphs), backend="openvino", precision="fp32"))
    assert ov.experiment == "tiny-bert-openvino" and ov.encoder.backbone.precision == "fp32"
    torch_model = load_model(_cfg(model=str(tiny_graphs), backend="torch", quantize="none"))
    assert torch_model.graph is None and not isinstance(torch_model.encoder.backbone, GraphBackbone)


def test_a_graph_backend_is_refused_where_it_cannot_run(tiny_graphs, tmp_path):
    with pytest.raises(ValueError, match="computes on the CPU"):
        load_model(_cfg(model=str(tiny_graphs), backend="onnx", device="cuda"))
    with pytest.raises(ValueError, match="fp32 only"):
        load_model(_cfg(model=str(tiny_graphs), backend="onnx", precision="bf16"))
    with pytest.raises(ValueError, match="backend is one of torch, onnx, openvino"):
        load_model(_cfg(model=str(tiny_graphs), backend="tensorrt"))
    with pytest.raises(FileNotFoundError, match=f"out={tmp_path} backend=openvino quantize=int8"):
        load_model(_cfg(model=str(tmp_path), backend="openvino", quantize="int8"))
