"""Embedding quantization shared by ``encode`` and the evaluation suite.

- ``float32``: unchanged.
- ``int8``: each dim d is mapped linearly from its calibration range [lo_d, hi_d] onto 256 levels,
  q = round((x - lo_d) / (hi_d - lo_d) * 255) - 128, clipped to [-128, 127]. The range comes from
  ``ranges`` (shape (2, D): row 0 = lo, row 1 = hi) or, if omitted, from the embeddings themselves.
- ``binary`` / ``ubinary``: the sign bit of each dim (x > 0 -> 1), packed 8 dims per byte
  (``np.packbits``, big-endian bit order, so (N, D) -> (N, ceil(D / 8))); ``binary`` stores the bytes
  as int8 (value - 128, the sentence-transformers convention), ``ubinary`` as uint8, which is what
  faiss ``IndexBinaryFlat`` takes.
"""

from __future__ import annotations

import numpy as np

PRECISIONS = ("float32", "int8", "binary", "ubinary")


def calibration_ranges(embeddings: np.ndarray) -> np.ndarray:
    """(2, D) array of per-dim minima and maxima, for ``int8`` quantization."""
    return np.stack([embeddings.min(axis=0), embeddings.max(axis=0)]).astype(np.float32)


def quantize(embeddings: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """Quantize (N, D) float embeddings to ``precision`` (see the module docstring for the formulas)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    emb = np.asarray(embeddings, dtype=np.float32)
    if precision == "float32":
        return emb
    if precision == "int8":
        lo, hi = calibration_ranges(emb) if ranges is None else np.asarray(ranges, dtype=np.float32)
        scale = np.where(hi > lo, hi - lo, 1.0)
        q = np.round((emb - lo) / scale * 255.0) - 128.0
        return np.clip(q, -128, 127).astype(np.int8)
    packed = np.packbits(emb > 0, axis=-1)
    if precision == "ubinary":
        return packed
    return (packed.astype(np.int16) - 128).astype(np.int8)
