"""How experiments/bench_gpu.py measures: timed training steps (warm-up, then synchronised steps within a
budget), peak memory, the matmul ceiling its MFU is a fraction of, and ``torch.compile`` with another
backend for ``--smoke``. Imports torch only: no Hydra, omegaconf or faiss (the GPU machine has none).
"""

from __future__ import annotations

import contextlib
import functools
import resource
import time
from collections.abc import Callable

import torch
from torch import Tensor


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def matmul_ceiling(device: torch.device, smoke: bool) -> dict:
    """The best TFLOP/s of square matmuls (bf16 on the GPU, fp32 on the CPU): 2 n^3 per product."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    best = {"tflops": 0.0, "n": 0, "dtype": str(dtype).removeprefix("torch.")}
    for n in (128, 256) if smoke else (4096, 8192, 16384):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        reps = 3 if smoke else max(5, int(2e13 / (2 * n**3)))
        sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        tflops = 2 * n**3 * reps / (time.perf_counter() - start) / 1e12
        if tflops > best["tflops"]:
            best.update(tflops=tflops, n=n)
        del a, b
    return best


def time_steps(
    step: Callable[[], Tensor], device: torch.device, warmup: int, iters: int, budget_s: float
) -> dict:
    """Warm up, then time steps; ``first_loss``: the loss of the first step (the initial weights, the
    same in every variant of a shape: ``b``, ``c`` and ``b_varlen``, ``d``, ``cd`` must agree)."""
    start = time.perf_counter()
    first_loss = float(step())
    for _ in range(warmup - 1):
        step()
    sync(device)
    warm = time.perf_counter() - start
    times: list[float] = []
    while len(times) < iters and (not times or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t)
    return {
        "warmup_s": warm,
        "steps_timed": len(times),
        "step_s": sum(times) / len(times),
        "first_loss": first_loss,
    }


@contextlib.contextmanager
def compile_backend(backend: str | None):
    """``torch.compile`` with ``backend`` while the encoder compiles its backbone (``--smoke``:
    dynamo's graph capture only, as inductor's code generation takes minutes on a CPU)."""
    if backend is None:
        yield
        return
    original = torch.compile
    torch.compile = functools.partial(original, backend=backend)
    try:
        yield
    finally:
        torch.compile = original
