"""The compute-precision policy: bf16 autocast where the hardware runs it fast, fp32 elsewhere.

One config value, ``precision: auto | bf16 | fp32`` (``conf/train.yaml``, ``conf/eval.yaml``), read by
the teacher (``jina5.teacher.cache.Teacher``), the evaluation encodes (``jina5.evaluate``) and the trainer
(``conf/trainer/*.yaml``: ``${lightning_precision:${precision},<device type>}``):

- ``fp32``: float32 throughout (the plain code path, with no autocast);
- ``bf16``: ``torch.autocast(device_type, dtype=torch.bfloat16)``: matmuls in bf16, reductions and
  the pooled / normalised output in float32 (``Encoder.forward``); training runs ``bf16-mixed``;
- ``auto``: ``bf16`` where the device has native bf16 arithmetic, else ``fp32``. A CPU qualifies
  with AMX (``amx_bf16``) or AVX512-BF16 (``avx512_bf16``) on x86, or the ``bf16`` feature on
  ARM (Linux ``/proc/cpuinfo``; other systems are never assumed to have it); a CUDA device when
  ``torch.cuda.is_bf16_supported(including_emulation=False)`` (native bf16: Ampere or later; a
  pre-Ampere GPU's emulated bf16 does not count).

Whichever path is taken is logged once per process and device type (INFO). It is also part of the
cache keys: the teacher cache and the evaluation cache key (``jina5.model.io.content_fingerprint``)
of a bf16 encode differ from fp32's, and fp32's are those of an encoder with no precision setting, so
caches are never mixed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CHOICES = ("auto", "bf16", "fp32")
FP32, BF16 = "fp32", "bf16"
LIGHTNING = {FP32: "32-true", BF16: "bf16-mixed"}  # the Lightning Trainer's `precision` of each path
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86 (AMX, AVX512-BF16) and ARM cpuinfo flags

_logged: set[tuple[str, str, str]] = set()


@functools.cache
def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, ...]:
    """The native-bf16 flags among :data:`CPU_BF16_FLAGS` that the CPU reports (empty when unknown)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return tuple(f for f in CPU_BF16_FLAGS if f in flags)


def fast_bf16(device_type: str) -> tuple[bool, str]:
    """(whether ``device_type`` has native bf16 arithmetic, the evidence as a phrase)."""
    if device_type == "cpu":
        flags = cpu_bf16_flags()
        return (True, f"the CPU has {'/'.join(flags)}") if flags else (False, "the CPU has no native bf16")
    if device_type == "cuda":
        # native only: by default torch also counts a pre-Ampere GPU's (slow) emulated bf16
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{torch.cuda.get_device_name()} supports bf16"
        return False, "no CUDA device with native bf16"
    return False, f"no bf16 policy for device type {device_type!r}"


def resolve_precision(choice: str, device_type: str = "cpu") -> str:
    """``auto | bf16 | fp32`` -> the path taken on ``device_type``: ``"bf16"`` or ``"fp32"``."""
    if choice not in CHOICES:
        raise ValueError(
            f"precision={choice!r}: must be one of {', '.join(CHOICES)} (the `precision` key of "
            "conf/train.yaml and conf/eval.yaml)"
        )
    if choice == "auto":
        fast, why = fast_bf16(device_type)
        path = BF16 if fast else FP32
    else:
        path, why = choice, "asked for"
    if (choice, device_type, path) not in _logged:
        _logged.add((choice, device_type, path))
        log.info("precision=%s on %s: %s (%s)", choice, device_type, path, why)
    return path


def lightning_precision(choice: str, device_type: str = "cpu") -> str:
    """The Lightning Trainer's ``precision`` for ``choice`` on ``device_type``: ``bf16-mixed`` or
    ``32-true`` (the ``${lightning_precision:...}`` resolver of ``conf/trainer/*.yaml``)."""
    return LIGHTNING[resolve_precision(choice, device_type)]


def autocast(path: str, device_type: str) -> contextlib.AbstractContextManager:
    """``torch.autocast(device_type, dtype=torch.bfloat16)`` for ``path == "bf16"``, else a no-op (the
    fp32 path runs exactly the code it ran before the policy existed)."""
    if path == BF16:
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if path == FP32:
        return contextlib.nullcontext()
    raise ValueError(f"compute precision {path!r}: must be {BF16!r} or {FP32!r} (resolve_precision)")
