"""Shared fixtures: a private cache root per test session; the `gpu` tier skips without CUDA."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Bundled models extract into a shared cache (once per machine); everything else is per session."""
    os.environ.setdefault("JINA5_CACHE", str(tmp_path_factory.mktemp("jina5-cache")))
    # fp32 unless a test asks for bf16: `precision: auto` would make results depend on the CPU's bf16 support
    os.environ.setdefault("JINA5_PRECISION", "fp32")
    yield


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run the CUDA paths: skipped where torch sees no CUDA device (``make gpu-check``
    runs them on a machine with one)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (make gpu-check)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_graphs(tmp_path_factory):
    """A tiny BERT encoder (with prompts) saved as a sentence-transformers directory holding all four
    inference graphs (``jina5.model.graph_export``: one trace, then the conversions); its path."""
    from jina5.model.encoder import Encoder
    from jina5.model.graph_export import export_onnx, export_openvino, quantize_onnx, quantize_openvino

    path = Encoder("tiny:bert", max_length=16, prompts={"query": "q: ", "document": "d: "}).save_pretrained(
        tmp_path_factory.mktemp("graphs") / "tiny-bert"
    )
    onnx_graph = export_onnx(path)
    quantize_onnx(path)
    export_openvino(path, onnx_graph)
    quantize_openvino(
        path, [f"text {i} of the calibration set, {'more words ' * (i % 5)}" for i in range(40)]
    )
    return path
