"""Teacher caching throughput, fp32 against bf16 autocast (``jina5.model.precision``), and their agreement.

The embedded default's teacher (all-mpnet-base-v2, 64 tokens, batch 32) fills a fresh
``TeacherCache`` with the same texts (news article bodies, a seeded sample) under each precision,
alternating rounds so that machine noise hits both alike. Prints texts/s for each (median of the
rounds), the ratio bf16 / fp32, and the minimum and mean cosine between the bf16 and fp32 vectors
(as cached, i.e. after the fp16 round trip of the cache).

    python experiments/bench_teacher.py [--n 256] [--rounds 3] [--max-length 64]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_cli import bench_args

from jina5.data.corpora import load_corpus
from jina5.model.precision import cpu_bf16_flags
from jina5.teacher.cache import Teacher, TeacherCache

TEACHER = "sentence-transformers/all-mpnet-base-v2"


def news_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct article bodies of the bundled news corpus, a seeded sample."""
    docs = list(dict.fromkeys(load_corpus("news")["document"]))
    rng = np.random.default_rng(seed)
    return [docs[i] for i in rng.choice(len(docs), size=min(n, len(docs)), replace=False)]


def fill_rate(teacher: Teacher, texts: list[str], root: Path) -> tuple[float, np.ndarray]:
    """(texts/s of filling an empty cache at ``root`` with ``texts``, the cached vectors)."""
    cache = TeacherCache(teacher, path=root, progress=False)
    start = time.perf_counter()
    cache.fill(texts)
    seconds = time.perf_counter() - start
    return len(texts) / seconds, cache.get(texts)


def main() -> None:
    args = bench_args(__doc__, n=256, rounds=3, batch_size=32, max_length=64).parse_args()

    texts = news_texts(args.n)
    teachers = {
        name: Teacher(TEACHER, max_length=args.max_length, batch_size=args.batch_size, precision=name)
        for name in ("fp32", "bf16")
    }
    teachers["fp32"].embed(texts[:8])  # warm-up (allocator, oneDNN kernels) outside the timings
    teachers["bf16"].embed(texts[:8])
    rates: dict[str, list[float]] = {name: [] for name in teachers}
    vectors: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, teacher in teachers.items():
                rate, vectors[name] = fill_rate(teacher, texts, Path(tmp) / f"{name}-{r}")
                rates[name].append(rate)
    med = {name: statistics.median(v) for name, v in rates.items()}
    cos = np.sum(vectors["fp32"] * vectors["bf16"], axis=1)
    print(
        f"teacher {TEACHER}, {len(texts)} news bodies, max_length {args.max_length}, batch {args.batch_size}, "
        f"torch threads {torch.get_num_threads()}, CPU bf16 flags {list(cpu_bf16_flags()) or 'none'}, "
        f"rounds {args.rounds} (median, alternating)"
    )
    for name, v in med.items():
        print(f"  {name:5s} {v:7.1f} texts/s   rounds: {', '.join(f'{x:.1f}' for x in rates[name])}")
    print(f"ratio bf16 / fp32: {med['bf16'] / med['fp32']:.2f}")
    print(f"cosine bf16 vs fp32 (cached, fp16): min {cos.min():.5f}, mean {cos.mean():.5f}")


if __name__ == "__main__":
    main()
