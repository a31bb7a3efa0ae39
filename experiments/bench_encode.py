"""Throughput of jina5 ``Encoder.encode`` against sentence-transformers' ``encode``.

Same model, same texts, same batch size and max length, both measured in this run, alternating
rounds so that machine noise hits both alike. Prints texts/s for each and the ratio jina5 / ST.

    python experiments/bench_encode.py [--model sentence-transformers/all-MiniLM-L6-v2] [--n 1000]
"""

from __future__ import annotations

import re
import statistics
import time

import numpy as np
import torch
from bench_cli import bench_args

from jina5.assets import package_file, resolve_model
from jina5.model.encoder import Encoder


def benchmark_texts(n: int) -> list[str]:
    """Real text of mixed lengths: sentences and paragraphs of gensim's Lee background corpus."""
    docs = (
        package_file("gensim", "gensim/test/test_data/lee_background.cor")
        .read_text(encoding="latin-1")
        .splitlines()
    )
    sentences = [s for d in docs for s in re.split(r"(?<=[.!?])\s+", d) if len(s.split()) > 3]
    pool = sentences + docs
    rng = np.random.default_rng(0)
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=len(pool) < n)]


def main() -> None:
    ap = bench_args(__doc__, n=1000, rounds=3, batch_size=32, max_length=256)
    ap.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    args = ap.parse_args()

    from sentence_transformers import SentenceTransformer

    path = resolve_model(args.model)
    texts = benchmark_texts(args.n)
    ours = Encoder(path, max_length=args.max_length)
    theirs = SentenceTransformer(path, device="cpu")
    theirs.max_seq_length = args.max_length

    a = ours.encode(texts[:64], batch_size=args.batch_size)
    b = theirs.encode(texts[:64], batch_size=args.batch_size, normalize_embeddings=True)
    print(f"max |jina5 - ST| on 64 texts: {np.abs(a - b).max():.2e}")

    runs = {"jina5": [], "sentence-transformers": []}
    for _ in range(args.rounds):
        t = time.perf_counter()
        ours.encode(texts, batch_size=args.batch_size)
        runs["jina5"].append(len(texts) / (time.perf_counter() - t))
        t = time.perf_counter()
        theirs.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
        runs["sentence-transformers"].append(len(texts) / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(
        f"model {args.model}, {len(texts)} texts, batch {args.batch_size}, max_length {args.max_length}, "
        f"torch threads {torch.get_num_threads()}, rounds {args.rounds} (median)"
    )
    for k, v in med.items():
        print(f"  {k:22s} {v:8.1f} texts/s   rounds: {', '.join(f'{x:.1f}' for x in runs[k])}")
    print(f"ratio jina5 / sentence-transformers: {med['jina5'] / med['sentence-transformers']:.3f}")


if __name__ == "__main__":
    main()
