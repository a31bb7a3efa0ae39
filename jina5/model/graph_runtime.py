"""An exported inference graph (ONNX Runtime or OpenVINO) as the backbone of an ``Encoder``.

    ids (B, L), mask (B, L) [, token_type_ids = 0] --graph--> last_hidden_state (B, L, H) float32

``jina5.model.graph_export`` writes the graphs into a sentence-transformers directory, in the layout
sentence-transformers' own exports use (``SentenceTransformer(dir, backend="onnx" | "openvino",
model_kwargs={"file_name": ...})`` finds them; that loader needs optimum, whose releases do not import
with transformers 5: ``docs/stage2-and-export.md``):

    onnx/model.onnx                               fp32 graph (torch.onnx, dynamo exporter)
    onnx/model_qint8_avx512_vnni.onnx             int8 weights, dynamic activations (onnxruntime)
    openvino/openvino_model.xml (+ .bin)          fp32 graph (converted from the ONNX graph)
    openvino/openvino_model_qint8_quantized.xml   int8, statically calibrated (nncf)

``GraphBackbone`` runs one of them where the ``Encoder`` runs its torch backbone, so tokenisation,
prompts, pooling, normalisation and quantisation of the vectors are the ``Encoder``'s own; its
``graph_sha256`` buffer (the graph files' digest) makes the evaluation fingerprint name the graph.
The graph takes no position ids (as sentence-transformers feeds it): it numbers positions as the Hugging
Face model does without them, from the first column, which equals the ``Encoder``'s numbering (over
real tokens) for right-padded batches only, so a left-padded encoder is refused. (MPNet numbers from
its fixed padding index 1, as its tokenizers pad; a toy tokenizer padding with another id differs.)
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig
from transformers.modeling_outputs import BaseModelOutput

from jina5.model.encoder import Encoder
from jina5.model.io import ADAPTERS_DIR
from jina5.model.precision import BF16, FP32

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "openvino")
QUANTIZE = ("none", "int8")
GRAPH_FILES = {
    ("onnx", "none"): "onnx/model.onnx",
    ("onnx", "int8"): "onnx/model_qint8_avx512_vnni.onnx",
    ("openvino", "none"): "openvino/openvino_model.xml",
    ("openvino", "int8"): "openvino/openvino_model_qint8_quantized.xml",
}
OPENVINO_PRECISION = {FP32: "f32", BF16: "bf16"}  # compute path -> OpenVINO's INFERENCE_PRECISION_HINT


def graph_file(backend: str, quantize: str = "none") -> str:
    """The graph's path inside an exported directory (module docstring), or ValueError naming the keys."""
    if (backend, quantize) not in GRAPH_FILES:
        raise ValueError(
            f"backend={backend!r} quantize={quantize!r}: exported graphs are backend=onnx|openvino with "
            f"quantize={'|'.join(QUANTIZE)}"
        )
    return GRAPH_FILES[backend, quantize]


def graph_digest(path: Path) -> bytes:
    """sha256 over the graph file and, for OpenVINO, its weights file (``.bin`` beside the ``.xml``)."""
    h = hashlib.sha256()
    for part in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
        with part.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.digest()


class GraphBackbone(nn.Module):
    """The backbone interface ``Encoder`` calls (``forward(input_ids, attention_mask)`` ->
    ``.last_hidden_state``, ``.config``), computed by the graph at ``path`` with ``backend``.

    ``precision``: ``fp32``, or ``bf16`` (OpenVINO on a CPU with bf16: its ``INFERENCE_PRECISION_HINT``,
    which OpenVINO would otherwise set to bf16 itself there; onnxruntime on the CPU has no bf16 path).
    ``threads``: the runtime's intra-op threads (default torch's, so a benchmark gives every backend the
    same cores)."""

    def __init__(
        self,
        path: str | Path,
        backend: str,
        config: PretrainedConfig,
        precision: str = FP32,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such {backend} graph")
        if precision not in OPENVINO_PRECISION or (backend == "onnx" and precision != FP32):
            raise ValueError(f"backend={backend} computes in fp32 only (precision=fp32), not {precision!r}")
        self.config, self.backend, self.path, self.precision = config, backend, path, precision
        self.register_buffer("graph_sha256", torch.tensor(list(graph_digest(path)), dtype=torch.uint8))
        threads = threads or torch.get_num_threads()
        if backend == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.input_names = [i.name for i in session.get_inputs()]
            self._run = lambda feed: session.run(None, feed)[0]
        elif backend == "openvino":
            import openvino as ov

            core = ov.Core()
            if precision == BF16 and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                raise ValueError("precision=bf16: OpenVINO has no bf16 on this CPU; use precision=fp32")
            compiled = core.compile_model(
                str(path),
                "CPU",
                {
                    "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[precision],
                    "PERFORMANCE_HINT": "LATENCY",  # optimum-intel's default for these models
                    "INFERENCE_NUM_THREADS": threads,
                },
            )
            self.input_names = [i.get_any_name() for i in compiled.inputs]
            self._run = lambda feed: compiled(feed)[0]
        else:
            raise ValueError(f"backend={backend!r}: a graph backend is onnx or openvino")

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> BaseModelOutput:
        ids = input_ids.cpu().numpy()
        feed = {"input_ids": ids, "attention_mask": attention_mask.cpu().numpy()}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = (
                np.zeros_like(ids) if token_type_ids is None else token_type_ids.cpu().numpy()
            )
        hidden = np.asarray(self._run(feed), dtype=np.float32)
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden).to(input_ids.device))


def load_graph_encoder(
    path: str | Path,
    backend: str,
    quantize: str = "none",
    precision: str = FP32,
    threads: int | None = None,
    **overrides,
) -> Encoder:
    """The ``Encoder`` of the exported directory ``path`` (its ``jina5_encoder.json`` settings, its
    tokenizer) computing with the graph ``graph_file(backend, quantize)``; no torch weights are loaded.
    ``overrides``: encoder settings that win over the saved ones (as ``Encoder.from_pretrained``)."""
    path = Path(path)
    if (path / ADAPTERS_DIR).is_dir():
        raise ValueError(
            f"{path}: holds task adapters, a graph holds one merged model; export it with jina5-export "
            "run=<encoder dir> task=<task> backend=..."
        )
    graph = path / graph_file(backend, quantize)
    if not graph.is_file():
        raise FileNotFoundError(
            f"{graph}: no such graph; write it with jina5-export run=<run or encoder dir> out={path} "
            f"backend={backend}" + (" quantize=int8" if quantize == "int8" else "")
        )
    backbone = GraphBackbone(graph, backend, AutoConfig.from_pretrained(path), precision, threads)
    encoder = Encoder.from_pretrained(
        path, source=backbone, tokenizer=AutoTokenizer.from_pretrained(path), **overrides
    )
    if encoder.tokenizer.padding_side != "right":
        raise ValueError(
            f"{path}: padding_side={encoder.tokenizer.padding_side!r}; the graph counts positions from the "
            "first column, so it encodes right-padded batches only (padding_side: right)"
        )
    encoder.compute_precision = precision
    log.info(
        "encoder %s computes with %s (%s, %s)", path, backbone.path.relative_to(path), backend, precision
    )
    return encoder


def graph_sentence_transformer(
    path: str | Path, backend: str, quantize: str = "none", threads: int | None = None
) -> SentenceTransformer:
    """``SentenceTransformer(path)`` whose Transformer module computes with the graph
    ``graph_file(backend, quantize)`` (fp32 compute): sentence-transformers' tokenisation, prompts,
    pooling and normalisation around the exported graph, without optimum. The torch weights are
    loaded first (the module is built from the directory) and then dropped."""
    from sentence_transformers import SentenceTransformer

    path = Path(path)
    model = SentenceTransformer(str(path), device="cpu")
    transformer = model[0]
    transformer.model = GraphBackbone(
        path / graph_file(backend, quantize), backend, transformer.model.config, FP32, threads
    )
    # the features the Transformer module forwards: the graph's arguments (it filters by this set)
    transformer.model_forward_params = set(inspect.signature(transformer.model.forward).parameters)
    return model
