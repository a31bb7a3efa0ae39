"""Throughput of jina5 ``Encoder.encode`` against sentence-transformers' ``encode``, and the end-to-end
evaluation of one model before and after a change.

**Encode.** Same model, texts, batch size and max length; three contenders in alternating rounds, so
that machine noise hits all alike:

- ``jina5``: ``Encoder.encode`` at ``--precision`` (default ``auto``: bf16 autocast where the CPU has
  native bf16, ``jina5.model.precision``), as the evaluation encodes;
- ``st-fp32``: ``SentenceTransformer.encode`` as it comes (fp32);
- ``st-bf16``: the same under ``torch.autocast("cpu", torch.bfloat16)``, the bf16 that
  sentence-transformers' trainer uses (equal precision).

Prints texts/s (median of the rounds) and the ratios jina5 / st-fp32 and jina5 / st-bf16, by wall time and
by this process's CPU time (less moved by other work on the machine, though not immune to it).

**End to end** (``--e2e-before <git revision>``): ``python -m jina5.evaluate model=<--e2e-model>`` on the
default suite (``reuse_cached=false``), run alternately from an export of that revision (``git archive``)
and from this checkout, each in a fresh process (interpreter start included), ``--e2e-rounds`` times
each. Before the timed rounds each side runs once untimed (extracts the bundled model; fills this
checkout's task cache, ``jina5.eval.task_cache``); the largest difference between the two sides'
stored values is printed from those runs (``--e2e-rounds 0``: only that). Prints wall and CPU seconds
per run and the ratio before / after.

    python experiments/bench_encode.py [--model sentence-transformers/all-MiniLM-L6-v2] [--n 1000]
    python experiments/bench_encode.py --rounds 0 --e2e-before 3cf92d1 [--e2e-model untrained_student]

The machine's load average is printed before and after: numbers taken while other work runs are
contended, and say so.
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from bench_cli import bench_args

from jina5.assets import package_file, resolve_model
from jina5.model.encoder import Encoder
from jina5.model.precision import autocast, cpu_bf16_flags, resolve_precision

ROOT = Path(__file__).resolve().parents[1]


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


def machine() -> str:
    """CPU model, its native-bf16 flags, torch threads and the load average: the line under every figure."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown CPU",
    )  # fmt: skip
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    flags = "/".join(cpu_bf16_flags()) or "no native bf16"
    return f"{cpu} ({flags}), torch threads {torch.get_num_threads()}, load average {load}"


def bench_encode(args) -> None:
    from sentence_transformers import SentenceTransformer

    path = resolve_model(args.model)
    texts = benchmark_texts(args.n)
    encoder = Encoder(path, max_length=args.max_length)
    encoder.compute_precision = resolve_precision(args.precision, "cpu")
    theirs = SentenceTransformer(path, device="cpu")
    theirs.max_seq_length = args.max_length

    def st(bf16: bool):
        def run(batch: list[str]) -> np.ndarray:
            with autocast("bf16", "cpu") if bf16 else nullcontext():
                return theirs.encode(batch, batch_size=args.batch_size, normalize_embeddings=True)

        return run

    contenders = {
        f"jina5 ({encoder.compute_precision})": lambda batch: encoder.encode(
            batch, batch_size=args.batch_size
        ),
        "st-fp32": st(False),
        "st-bf16": st(True),
    }
    reference = contenders["st-fp32"](texts[:64])
    for name, fn in contenders.items():
        print(f"max |{name} - st-fp32| on 64 texts: {np.abs(fn(texts[:64]) - reference).max():.2e}")
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}  # (wall, cpu) texts/s
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            start, cpu = time.perf_counter(), time.process_time()
            fn(texts)
            runs[name].append(
                (len(texts) / (time.perf_counter() - start), len(texts) / (time.process_time() - cpu))
            )
    med = {k: [statistics.median(x) for x in zip(*v, strict=True)] for k, v in runs.items()}
    print(
        f"model {args.model}, {len(texts)} texts, batch {args.batch_size}, max_length {args.max_length}, "
        f"rounds {args.rounds} (median)"
    )
    for k, (wall, cpu) in med.items():
        rounds = ", ".join(f"{w:.1f}" for w, _ in runs[k])
        print(f"  {k:22s} {wall:8.1f} texts/s ({cpu:6.1f} per CPU second)   rounds: {rounds}")
    ours = next(iter(contenders))
    for other in ("st-fp32", "st-bf16"):
        wall, cpu = (med[ours][i] / med[other][i] for i in (0, 1))
        print(f"ratio {ours} / {other}: {wall:.3f} (by CPU time {cpu:.3f})")


def export_revision(rev: str, into: Path) -> Path:
    """This repository at ``rev`` (``git archive``) under ``into``, with ``jina5/conf`` linked to its
    ``conf/`` as in a checkout."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    if not (into / "jina5" / "conf").exists():
        (into / "jina5" / "conf").symlink_to("../conf")
    return into


def evaluate_once(src: Path, model: str, results: Path, overrides: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (the child's user + system) of ``python -m jina5.evaluate`` run from ``src``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "jina5.evaluate", f"model={model}", f"results={results}",
         "reuse_cached=false", "progress=false", f"hydra.run.dir={results.parent / 'hydra'}", *overrides],
        cwd=src, env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"jina5.evaluate from {src} failed:\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def largest_difference(a: Path, b: Path) -> str:
    """The largest |value difference| between two stores' records of the same (task, metric, dim,
    precision), and where; records in one store only are counted."""
    import json

    def values(path: Path) -> dict[tuple, float]:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return {(r["task_name"], r["metric"], r["dim"], r["precision"]): r["value"] for r in rows}

    va, vb = values(a), values(b)
    common = sorted(set(va) & set(vb))
    diffs = [(abs(va[k] - vb[k]), k) for k in common if va[k] == va[k] and vb[k] == vb[k]]
    worst = max(diffs, default=(0.0, None))
    only = len(set(va) ^ set(vb))
    return f"{len(common)} records in both, {only} in one only; max |before - after| = {worst[0]:.2e} at {worst[1]}"


def bench_e2e(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sides = {"before": export_revision(args.e2e_before, tmp / "before"), "after": ROOT}
        overrides = [f"precision={args.precision}"]
        for name, src in sides.items():  # untimed: bundled model extracted, task cache filled
            wall, cpu = evaluate_once(src, args.e2e_model, tmp / name / "warm.jsonl", overrides)
            print(f"  {name:6s} untimed first run: wall {wall:6.1f} s, cpu {cpu:6.1f} s", flush=True)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        for r in range(args.e2e_rounds):
            for name, src in sides.items():
                times[name].append(evaluate_once(src, args.e2e_model, tmp / name / f"r{r}.jsonl", overrides))
                print(f"  round {r} {name:6s} wall {times[name][-1][0]:6.1f} s, cpu {times[name][-1][1]:6.1f} s",
                      flush=True)  # fmt: skip
        print("  " + largest_difference(tmp / "before" / "warm.jsonl", tmp / "after" / "warm.jsonl"))
        if not args.e2e_rounds:
            return
        med = {name: [statistics.median(x) for x in zip(*t, strict=True)] for name, t in times.items()}
        print(
            f"end to end, model={args.e2e_model}, precision={args.precision}, {args.e2e_rounds} rounds (median):"
        )
        for name in sides:
            print(f"  {name:6s} ({args.e2e_before if name == 'before' else 'this checkout'}): "
                  f"wall {med[name][0]:6.1f} s, cpu {med[name][1]:6.1f} s")  # fmt: skip
        print(f"ratio before / after: wall {med['before'][0] / med['after'][0]:.2f}, "
              f"cpu {med['before'][1] / med['after'][1]:.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = bench_args(__doc__, n=1000, rounds=3, batch_size=32, max_length=256)
    ap.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--precision", default="auto", help="auto | bf16 | fp32 (jina5.model.precision)")
    ap.add_argument("--e2e-before", help="a git revision: time the end-to-end evaluation there and here")
    ap.add_argument("--e2e-model", default="untrained_student", help="model= of the end-to-end runs")
    ap.add_argument("--e2e-rounds", type=int, default=2)
    args = ap.parse_args(argv)
    print(machine(), flush=True)
    if args.rounds:
        bench_encode(args)
    if args.e2e_before:
        bench_e2e(args)
    print(machine(), flush=True)


if __name__ == "__main__":
    main()
