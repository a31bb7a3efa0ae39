"""``jina5.eval.models.load_model``: the device the encoder evaluates on (issue 25: ``jina5.evaluate`` and
``jina5.mteb`` never moved the encoder to a GPU)."""

from __future__ import annotations

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
