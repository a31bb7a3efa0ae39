"""The command line that the throughput benchmarks in experiments/ share (texts, rounds, batch, length)."""

from __future__ import annotations

import argparse


def bench_args(
    description: str | None, *, n: int, rounds: int, batch_size: int, max_length: int
) -> argparse.ArgumentParser:
    """A parser with ``--n`` texts, ``--rounds`` (alternating, median reported), ``--batch-size`` and
    ``--max-length`` (tokens), defaulting to the given values; add a benchmark's own options to it."""
    ap = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=n, help="texts per round")
    ap.add_argument("--rounds", type=int, default=rounds, help="rounds per contender, alternating")
    ap.add_argument("--batch-size", type=int, default=batch_size)
    ap.add_argument("--max-length", type=int, default=max_length, help="tokens per text")
    return ap
