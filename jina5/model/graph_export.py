"""Inference graphs for an exported sentence-transformers directory: ONNX and OpenVINO, fp32 and int8.

    <dir> torch weights --torch.onnx.export (dynamo)---------> onnx/model.onnx
    onnx/model.onnx     --onnxruntime quantize_dynamic-------> onnx/model_qint8_avx512_vnni.onnx
    onnx/model.onnx     --openvino.convert_model-------------> openvino/openvino_model.xml
    openvino fp32       --nncf.quantize (calibration texts)--> openvino/openvino_model_qint8_quantized.xml

Each graph maps (input_ids, attention_mask [, token_type_ids]) of shape (B, L) to the backbone's
last_hidden_state (B, L, H); batch and length are dynamic. The int8 settings are the ones
sentence-transformers' exports pass to optimum (``export_dynamic_quantized_onnx_model(model,
"avx512_vnni")``, ``export_static_quantized_openvino_model(model, None)``):

- ONNX int8 (dynamic): weights int8, symmetric, one scale per output channel; activations uint8,
  asymmetric, scaled per tensor at run time: x_q = round(x / s) + z with s = (max x - min x) / 255;
  the MatMuls (and Gather, Attention...) run in integers (onnxruntime's IntegerOps).
- OpenVINO int8 (static): nncf post-training quantization with the preset ``mixed`` (symmetric
  weights, asymmetric activations), model type ``transformer``, fast bias correction, no overflow fix;
  activation ranges from ``calibration`` texts (up to 300, sentence-transformers' default), each
  tokenised as the encoder does, with its named prompts taken in turn.

Why not through optimum, as sentence-transformers does: its releases pin transformers < 4.58
(optimum-onnx 0.1.0) and < 5.6 (optimum-intel 2.2.0) and fail to import with transformers 5
(``docs/stage2-and-export.md`` has the exact errors); torch.onnx, onnxruntime, openvino and nncf are
the libraries optimum itself calls. ``jina5.model.graph_runtime`` runs the graphs.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from jina5.model.encoder import Encoder
from jina5.model.graph_runtime import BACKENDS, QUANTIZE, graph_file, load_graph_encoder

log = logging.getLogger(__name__)

CALIBRATION_TEXTS = 300
EXAMPLE = ["a text of several words to trace the graph with", "short"]  # two lengths: a real padding mask


class LastHiddenState(nn.Module):
    """``backbone(**inputs).last_hidden_state`` with the graph's input names as arguments."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        params = inspect.signature(backbone.forward).parameters
        self.input_names = ["input_ids", "attention_mask"] + ["token_type_ids"] * ("token_type_ids" in params)
        self.extra = {"use_cache": False} if "use_cache" in params else {}

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return self.backbone(**inputs, **self.extra).last_hidden_state


def export_onnx(path: str | Path, out: str | Path | None = None) -> Path:
    """The fp32 ONNX graph (one file) of the torch weights saved at ``path``, written to ``out``
    (default ``<path>/onnx/model.onnx``)."""
    import torch
    from torch.export import Dim

    path = Path(path)
    encoder = Encoder.from_pretrained(path, attn_implementation="eager").float().eval()
    module = LastHiddenState(encoder.backbone)
    batch = encoder.tokenize(EXAMPLE)
    args = (batch["input_ids"], batch["attention_mask"])
    if "token_type_ids" in module.input_names:
        args += (torch.zeros_like(batch["input_ids"]),)
    axes = {0: Dim("batch"), 1: Dim("sequence")}
    out = Path(out) if out is not None else path / graph_file("onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        module,
        args,
        str(out),
        input_names=module.input_names,
        output_names=["last_hidden_state"],
        dynamic_shapes={name: axes for name in module.input_names},
        dynamo=True,
        external_data=False,
    )
    log.info("exported %s", out)
    return out


def quantize_onnx(path: str | Path) -> Path:
    """``<path>/onnx/model_qint8_avx512_vnni.onnx``: dynamic int8 of ``<path>/onnx/model.onnx``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = Path(path)
    out = path / graph_file("onnx", "int8")
    quantize_dynamic(
        path / graph_file("onnx"),
        out,
        per_channel=True,
        reduce_range=False,
        weight_type=QuantType.QInt8,
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )
    log.info("quantized %s", out)
    return out


def export_openvino(path: str | Path, onnx_graph: str | Path) -> Path:
    """``<path>/openvino/openvino_model.xml`` (+ ``.bin``, fp32 weights) converted from ``onnx_graph``."""
    import openvino as ov

    out = Path(path) / graph_file("openvino")
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(onnx_graph)), str(out), compress_to_fp16=False)
    log.info("exported %s", out)
    return out


def quantize_openvino(path: str | Path, calibration: Sequence[str]) -> Path:
    """``<path>/openvino/openvino_model_qint8_quantized.xml``: static int8 of the fp32 OpenVINO graph,
    calibrated on the first ``CALIBRATION_TEXTS`` of ``calibration`` (module docstring)."""
    import nncf
    import numpy as np
    import openvino as ov

    path = Path(path)
    texts = [t for t in calibration if t.strip()][:CALIBRATION_TEXTS]
    if not texts:
        raise ValueError("quantize=int8 for openvino needs calibration texts; got none")
    encoder = load_graph_encoder(path, "openvino")
    prompts = itertools.cycle(sorted(encoder.prompts) or [None])
    items = []
    for text, prompt in zip(texts, prompts, strict=False):
        ids = encoder.tokenize([text], prompt)
        feed = {k: v.numpy() for k, v in ids.items()}
        if "token_type_ids" in encoder.backbone.input_names:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        items.append(feed)
    quantized = nncf.quantize(
        ov.Core().read_model(str(path / graph_file("openvino"))),
        nncf.Dataset(items),
        preset=nncf.QuantizationPreset.MIXED,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(items),
        fast_bias_correction=True,
        advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.DISABLE),
    )
    out = path / graph_file("openvino", "int8")
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    log.info("quantized %s on %d calibration texts", out, len(items))
    return out


def check_graph(backend: str, quantize: str) -> tuple[str, str]:
    """``(backend, quantize)`` if they name graphs ``export_graphs`` writes (or plain torch), else
    ValueError naming the keys."""
    if backend not in BACKENDS or quantize not in QUANTIZE or (backend == "torch" and quantize != "none"):
        raise ValueError(
            f"backend={backend} quantize={quantize}: backend is one of {', '.join(BACKENDS)}; quantize is "
            f"one of {', '.join(QUANTIZE)}, and int8 needs backend=onnx or backend=openvino"
        )
    return backend, quantize


def export_graphs(
    path: str | Path, backend: str, quantize: str = "none", calibration: Sequence[str] | None = None
) -> list[Path]:
    """Write the ``backend`` graphs of the sentence-transformers directory ``path``: the fp32 graph, and
    with ``quantize="int8"`` its int8 graph too (OpenVINO's calibrated on ``calibration``); their paths.
    ``backend="torch"`` writes nothing (the directory's weights are the torch model)."""
    check_graph(backend, quantize)
    if backend == "torch":
        return []
    if backend == "openvino" and quantize == "int8" and calibration is None:
        raise ValueError("backend=openvino quantize=int8 needs calibration texts")
    written: list[Path] = []
    if backend == "onnx":
        written.append(export_onnx(path))
        if quantize == "int8":
            written.append(quantize_onnx(path))
        return written
    with tempfile.TemporaryDirectory() as tmp:  # the ONNX graph is only the conversion's source here
        written.append(export_openvino(path, export_onnx(path, Path(tmp) / "model.onnx")))
    if quantize == "int8":
        written.append(quantize_openvino(path, calibration))
    return written
