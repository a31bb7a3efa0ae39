"""The Encoder and its on-disk format, usable without training: encoder, task adapters, save/load,
the sentence-transformers format and card, ONNX / OpenVINO inference graphs, packing, RoPE, precision
policy, quantisation, tiny models.

Knows no training, evaluation or run directory."""
