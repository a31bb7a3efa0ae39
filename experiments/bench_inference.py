"""CPU encode throughput of the default student's inference paths: torch fp32, torch bf16 (autocast),
ONNX, ONNX int8, OpenVINO and OpenVINO int8 (``jina5.model.graph_export`` / ``graph_runtime``).

Every contender is an ``Encoder`` over the same exported directory (same tokenisation, prompts, pooling),
with the same intra-op threads; they are timed in turn, round after round, in one process (machine noise
hits all alike); medians and the ratio to torch fp32 are reported, with the cosine of each contender's
vectors to torch fp32's, the CPU model and the load average before and after.

    python experiments/bench_inference.py [--export outputs/exports/default_student] [--n 512] [--rounds 5]

``--export``: a directory ``jina5-export ... backend=onnx quantize=int8`` and ``backend=openvino
quantize=int8`` wrote into; when it lacks a graph, the default student (conf/eval.yaml's
``untrained_student``: all-MiniLM-L6-v2 pruned to layers 0, 2, 4) is saved and exported there first.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from bench_cli import bench_args
from bench_encode import benchmark_texts
from jina5.conf import compose
from omegaconf import OmegaConf

from jina5.export import calibration_texts
from jina5.model.encoder import Encoder
from jina5.model.graph_export import export_graphs
from jina5.model.graph_runtime import GRAPH_FILES, load_graph_encoder
from jina5.model.precision import BF16, FP32

CONTENDERS = {  # name -> (backend, quantize, compute precision)
    "torch fp32": ("torch", "none", FP32),
    "torch bf16": ("torch", "none", BF16),
    "ONNX": ("onnx", "none", FP32),
    "ONNX int8": ("onnx", "int8", FP32),
    "OpenVINO": ("openvino", "none", FP32),
    "OpenVINO int8": ("openvino", "int8", FP32),
}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return "unknown"


def default_student_export(path: Path) -> Path:
    """``path`` holding every graph; the default student is saved and exported there when one is missing."""
    if all((path / file).exists() for file in GRAPH_FILES.values()):
        return path
    kwargs = OmegaConf.to_container(compose(["model=untrained_student"], "eval").baselines.untrained_student)
    Encoder(**kwargs).save_pretrained(path)
    export_graphs(path, "onnx", "int8")
    export_graphs(path, "openvino", "int8", calibration_texts())
    return path


def load(path: Path, backend: str, quantize: str, precision: str, max_length: int) -> Encoder:
    if backend == "torch":
        encoder = Encoder.from_pretrained(path)
        encoder.compute_precision = precision
    else:
        encoder = load_graph_encoder(path, backend, quantize, precision)
    encoder.max_length = max_length
    return encoder


def main(argv: Sequence[str] | None = None) -> dict:
    ap = bench_args(__doc__, n=512, rounds=5, batch_size=32, max_length=128)
    ap.add_argument("--export", type=Path, default=Path("outputs/exports/default_student"))
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    args = ap.parse_args(argv)

    path = default_student_export(args.export)
    texts = benchmark_texts(args.n)
    encoders = {name: load(path, *spec, args.max_length) for name, spec in CONTENDERS.items()}
    probe = texts[:64]
    reference = encoders["torch fp32"].encode(probe, batch_size=args.batch_size)
    cosines = {
        name: float((enc.encode(probe, batch_size=args.batch_size) * reference).sum(1).min())
        for name, enc in encoders.items()
    }
    load_before = os.getloadavg()
    rounds: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(args.rounds):
        for name, enc in encoders.items():
            start = time.perf_counter()
            enc.encode(texts, batch_size=args.batch_size)
            rounds[name].append(len(texts) / (time.perf_counter() - start))
    load_after = os.getloadavg()
    medians = {name: statistics.median(v) for name, v in rounds.items()}
    result = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": load_after,
        "export": str(path),
        "n": len(texts),
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "rounds": args.rounds,
        "contenders": {
            name: {
                "texts_per_s": medians[name],
                "ratio": medians[name] / medians["torch fp32"],
                "min_cosine": cosines[name],
                "rounds": rounds[name],
            }
            for name in encoders
        },
    }
    print(
        f"{result['cpu']}, {result['cores']} cores, {result['threads']} threads per contender; load average "
        f"(1/5/15 min) before {', '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{', '.join(f'{x:.2f}' for x in load_after)}\n{len(texts)} texts, batch {args.batch_size}, max_length "
        f"{args.max_length}, {args.rounds} alternating rounds (median); {path}"
    )
    print(f"| {'contender':14s} | texts/s | x torch fp32 | min cos vs torch fp32 |\n|---|---:|---:|---:|")
    for name, row in result["contenders"].items():
        print(f"| {name:14s} | {row['texts_per_s']:7.1f} | {row['ratio']:5.2f} | {row['min_cosine']:.5f} |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
