"""The CPU speed levers that experiments/bench_train.py times: the config of today's path, of each lever
alone and of all of them; glibc's allocator as today's path leaves it; the matmul FLOPs of a step on its
real tokens and a bf16 matmul ceiling of the step's shapes (the CPU utilisation line).
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterable, Mapping

import torch
from transformers import PretrainedConfig

from jina5.training import allocator

# Today's path: every lever off (the defaults before them).
TODAY = (
    "optimizer.fused=false",
    "student.attn_implementation=sdpa",
    "student.packing=false",
    "module.keep_freed_memory=false",
    "module.merged_forward=false",
)
LEVERS = {  # each lever on its own, over TODAY
    "fused AdamW": ["optimizer.fused=null"],  # auto: fused on CPU
    "eager attention": ["student.attn_implementation=null"],  # auto: eager for CPU training with dropout
    "keep freed memory": ["module.keep_freed_memory=true"],
    "packing": ["student.packing=auto"],
    # merged only where widths agree or the student packs: on its own (queries 32, documents 64
    # tokens) it would change nothing; here on top of packing (compare with the packing row)
    "merged + packing": ["module.merged_forward=true", "student.packing=auto"],
}
TODAY_NAME, ALL_NAME = "today", "all levers"


def variants() -> dict[str, list[str]]:
    """{name: overrides}: today's path, each lever alone, all levers (the shipped defaults)."""
    out = {TODAY_NAME: list(TODAY)}
    out.update({name: [*TODAY, *overrides] for name, overrides in LEVERS.items()})
    out[ALL_NAME] = [*TODAY, *(o for overrides in LEVERS.values() for o in overrides)]
    return out


# glibc's mallopt parameters (malloc.h) and the values a process of today's path runs with after its first
# steps: the dynamic mmap threshold risen to its 32 MiB ceiling by the blocks freed, the trim threshold
# at twice that, up to 65,536 mmapped blocks, a 128 KiB top pad.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -2, -3, -4
STEADY_STATE = {
    M_MMAP_MAX: 65536,
    M_MMAP_THRESHOLD: 32 << 20,
    M_TRIM_THRESHOLD: 64 << 20,
    M_TOP_PAD: 128 << 10,
}


def glibc_as_today() -> None:
    """Set glibc's allocator back to today's steady state (:data:`STEADY_STATE`) after a round that kept
    freed memory (``mallopt`` has no undo, and its dynamic threshold cannot be switched back on), and
    return the free memory that round kept (``malloc_trim``), so that later requests map fresh pages as
    today's do: the rounds of today's path and of sentence-transformers run with it. No-op off glibc."""
    if allocator.is_glibc():
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        for param, value in STEADY_STATE.items():
            libc.mallopt(param, value)
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        libc.malloc_trim(0)


def forward_flops(lengths: Iterable[int], config: PretrainedConfig) -> int:
    """Matmul FLOPs of a BERT-style encoder's forward over texts of ``lengths`` real tokens each (pads
    excluded): per layer and text of n tokens, Q, K, V and the output projection 4 x 2nH^2, the
    feed-forward 2 x 2nHI, the scores QK^T and their product with V 2 x 2n^2H (H hidden, I intermediate)."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return layers * sum(8 * n * h * h + 4 * n * h * i + 4 * n * n * h for n in lengths)


def step_flops(batches: Iterable[Mapping], config: PretrainedConfig) -> int:
    """Matmul FLOPs of the training steps on ``batches`` (collated): forward and backward (twice the
    forward: the gradients of the inputs and of the weights) over every field's real tokens."""
    total = 0
    for batch in batches:
        for field in ("query", "document", "negatives"):
            if batch.get(field) is not None:
                total += 3 * forward_flops(batch[field]["attention_mask"].sum(1).tolist(), config)
    return total


def matmul_ceiling(tokens: int, config: PretrainedConfig, seconds: float = 2.0) -> tuple[float, float]:
    """GFLOP/s of a bf16 matmul of the step's shape, (tokens x H) @ (H x I), repeated for about
    ``seconds`` on this process's threads: what the step's matmuls could reach at best. Per wall second,
    and per second of the process's CPU time (all threads)."""
    h, i = config.hidden_size, config.intermediate_size
    a = torch.randn(tokens, h, dtype=torch.bfloat16)
    b = torch.randn(h, i, dtype=torch.bfloat16)
    torch.mm(a, b)
    n, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        n += 1
    gflop = 2 * tokens * h * i * n / 1e9
    return gflop / (time.perf_counter() - start), gflop / (time.process_time() - cpu_start)
