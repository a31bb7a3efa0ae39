"""Inference graphs (issue 24): ONNX / OpenVINO, fp32 / int8, written into a sentence-transformers
directory, encode as the torch model does, sit where sentence-transformers' backends look, and are named
by the evaluation fingerprint."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest
from sentence_transformers import SentenceTransformer

from jina5.export import main as export_main
from jina5.model.encoder import Encoder
from jina5.model.graph_runtime import (
    GRAPH_FILES,
    GraphBackbone,
    graph_file,
    graph_sentence_transformer,
    load_graph_encoder,
)
from jina5.model.io import content_fingerprint

# lengths 1 to > max_length (16: the last is truncated); encoded in batches of 3 and 1
TEXTS = ["the cat sat on the mat", "stock markets fell", "a", "the quick brown fox jumps over the lazy dog"]
GRAPHS = [
    ("onnx", "none", 0.9999),
    ("onnx", "int8", 0.99),
    ("openvino", "none", 0.9999),
    ("openvino", "int8", 0.99),
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize(("backend", "quantize", "bound"), GRAPHS)
def test_each_graph_encodes_as_the_torch_model(tiny_graphs, backend, quantize, bound):
    """cos(graph, torch) >= 0.9999 for fp32 graphs, >= 0.99 for int8, in ``Encoder`` and in
    ``SentenceTransformer`` (prompts, dynamic batch and length)."""
    torch_encoder = Encoder.from_pretrained(tiny_graphs)
    graph_encoder = load_graph_encoder(tiny_graphs, backend, quantize)
    assert isinstance(graph_encoder.backbone, GraphBackbone)
    assert not list(graph_encoder.parameters())  # no torch weights were loaded
    for prompt in (None, "query", "document"):
        ref = torch_encoder.encode(TEXTS, prompt=prompt)
        got = graph_encoder.encode(TEXTS, prompt=prompt, batch_size=3)
        assert got.shape == ref.shape
        assert cosines(got, ref).min() >= bound
    ref_st = SentenceTransformer(str(tiny_graphs), device="cpu").encode(TEXTS, prompt_name="query")
    got_st = graph_sentence_transformer(tiny_graphs, backend, quantize).encode(TEXTS, prompt_name="query")
    assert cosines(got_st, ref_st).min() >= bound
    np.testing.assert_allclose(got_st, graph_encoder.encode(TEXTS, prompt="query"), atol=1e-5)


def test_the_int8_graphs_compute_in_integers(tiny_graphs):
    """The int8 files hold quantized ops (not a copy of the fp32 graph), and their vectors differ."""
    onnx_ops = {node.op_type for node in onnx.load(tiny_graphs / graph_file("onnx", "int8")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= onnx_ops or "DynamicQuantizeMatMul" in onnx_ops
    fp32_ops = {node.op_type for node in onnx.load(tiny_graphs / graph_file("onnx")).graph.node}
    assert not fp32_ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}
    ov_ops = {
        op.get_type_name()
        for op in ov.Core().read_model(tiny_graphs / graph_file("openvino", "int8")).get_ops()
    }
    assert "FakeQuantize" in ov_ops
    for backend in ("onnx", "openvino"):
        fp32 = load_graph_encoder(tiny_graphs, backend).encode(TEXTS)
        int8 = load_graph_encoder(tiny_graphs, backend, "int8").encode(TEXTS)
        assert np.abs(fp32 - int8).max() > 1e-4


def test_the_graphs_sit_where_sentence_transformers_backends_load_them(tiny_graphs):
    """sentence-transformers' own lookup (``backend_should_export``) finds each graph instead of exporting
    again (the fp32 graph by default, an int8 one by ``model_kwargs={"file_name": ...}``), and the graphs
    take and give the tensors optimum's feature-extraction models feed and read."""
    from sentence_transformers.backend.utils import backend_should_export

    lookups = {
        "onnx": ("model.onnx", "*.onnx", "ONNX"),
        "openvino": ("openvino_model.xml", "openvino*.xml", "OpenVINO"),
    }
    for backend, (target, glob, name) in lookups.items():
        export, kwargs = backend_should_export(tiny_graphs, True, {}, target, glob, name)
        assert not export and f"{kwargs['subfolder']}/{kwargs['file_name']}" == graph_file(backend)
        chosen = {"file_name": graph_file(backend, "int8")}
        export, kwargs = backend_should_export(tiny_graphs, True, chosen, target, glob, name)
        assert not export and f"{kwargs['subfolder']}/{kwargs['file_name']}" == graph_file(backend, "int8")
    inputs = ["input_ids", "attention_mask", "token_type_ids"]  # BERT: optimum's BertOnnxConfig inputs
    for (backend, quantize), file in GRAPH_FILES.items():
        if backend == "onnx":
            session = ort.InferenceSession(str(tiny_graphs / file))
            names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
        else:
            model = ov.Core().read_model(tiny_graphs / file)
            names = [i.get_any_name() for i in model.inputs], [o.get_any_name() for o in model.outputs]
        assert names == (inputs, ["last_hidden_state"]), (backend, quantize)


def test_sentence_transformers_with_optimum_loads_the_graphs(tiny_graphs):
    """Where optimum imports (not with transformers 5 today: docs/stage2-and-export.md), plain
    ``SentenceTransformer(dir, backend=...)`` loads each graph and matches the torch vectors."""
    pytest.importorskip("optimum.onnxruntime")
    pytest.importorskip("optimum.intel")
    ref = SentenceTransformer(str(tiny_graphs), device="cpu").encode(TEXTS)
    for backend, quantize, bound in GRAPHS:
        st = SentenceTransformer(
            str(tiny_graphs),
            device="cpu",
            backend=backend,
            model_kwargs={"file_name": graph_file(backend, quantize)},
        )
        assert cosines(st.encode(TEXTS), ref).min() >= bound


def test_the_fingerprint_names_the_graph_and_its_precision(tiny_graphs):
    """Each graph keys its own results (a cached torch score is never reused for a graph), the same
    graph loaded again keys the same, and OpenVINO's bf16 path keys apart from its fp32."""
    prints = [content_fingerprint(Encoder.from_pretrained(tiny_graphs))]
    prints += [content_fingerprint(load_graph_encoder(tiny_graphs, b, q)) for b, q in GRAPH_FILES]
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        prints.append(content_fingerprint(load_graph_encoder(tiny_graphs, "openvino", precision="bf16")))
    assert len(set(prints)) == len(prints)
    assert content_fingerprint(load_graph_encoder(tiny_graphs, "onnx", "int8")) == prints[2]


def test_what_a_graph_cannot_do_is_refused(tiny_graphs):
    with pytest.raises(ValueError, match="padding_side"):  # the graph's positions assume right padding
        load_graph_encoder(tiny_graphs, "onnx", padding_side="left")
    with pytest.raises(ValueError, match="fp32 only"):
        load_graph_encoder(tiny_graphs, "onnx", precision="bf16")
    with pytest.raises(ValueError, match="quantize=none|int8"):
        graph_file("onnx", "int4")


def test_export_cli_writes_the_graph_its_error_asks_for(tmp_path):
    """A directory without graphs: the error names the export command; running it makes the load work."""
    source = Encoder("tiny:bert", max_length=16).save_pretrained(tmp_path / "encoder")
    out = tmp_path / "export"
    with pytest.raises(ValueError, match="backend is one of torch, onnx, openvino"):
        export_main([f"run={source}", f"out={out}", "backend=tensorrt"])
    with pytest.raises(ValueError, match="int8 needs backend=onnx or backend=openvino"):
        export_main([f"run={source}", f"out={out}", "quantize=int8"])
    assert not out.exists()  # refused before anything was written
    export_main([f"run={source}", f"out={out}"])
    with pytest.raises(
        FileNotFoundError, match=f"jina5-export run=<run or encoder dir> out={out} backend=onnx quantize=int8"
    ):
        load_graph_encoder(out, "onnx", "int8")
    export_main([f"run={source}", f"out={out}", "backend=onnx", "quantize=int8"])
    assert (out / "modules.json").exists()  # still a sentence-transformers directory
    ref = Encoder.from_pretrained(source).encode(TEXTS)
    assert cosines(load_graph_encoder(out, "onnx").encode(TEXTS), ref).min() >= 0.9999
    assert cosines(load_graph_encoder(out, "onnx", "int8").encode(TEXTS), ref).min() >= 0.99
    assert not (out / "openvino").exists()
