"""The machine a result was measured on: CPU model, its native-bf16 flags, the accelerator, and the library
versions that change the digits. Stored with every evaluation (the run's config, key ``machine``) and printed
under every table, because bf16 kernels round differently on different CPUs (AMX vs AVX512-BF16)."""

from __future__ import annotations

import functools
import platform
from importlib import metadata
from pathlib import Path

import torch

from jina5.model.precision import cpu_bf16_flags

LIBRARIES = ("torch", "transformers", "lightning", "sentence-transformers", "numpy", "faiss-cpu")


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's ``model name`` (Linux ``/proc/cpuinfo``), else its architecture (``platform.machine()``,
    which starts no process, unlike ``platform.processor()``), else ``unknown``."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.machine() or "unknown"


@functools.cache
def machine() -> dict:
    """{cpu, bf16_flags, accelerator (the CUDA device's name or None), libraries {name: version}}."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": cpu_model(),
        "bf16_flags": list(cpu_bf16_flags()),
        "accelerator": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "libraries": versions,
    }


def describe(info: dict) -> str:
    """``AMD EPYC (bf16: avx512_bf16); torch 2.13.0, transformers 5.24.0, ...`` (``bf16: none`` without)."""
    flags = ", ".join(info.get("bf16_flags") or []) or "none"
    accelerator = f", {info['accelerator']}" if info.get("accelerator") else ""
    libraries = ", ".join(f"{k} {v}" for k, v in (info.get("libraries") or {}).items())
    head = f"{info.get('cpu', 'unknown')} (bf16: {flags}){accelerator}"
    return f"{head}; {libraries}" if libraries else head
