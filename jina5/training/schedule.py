"""The learning-rate schedule and the check of its config (the ``scheduler`` node, conf/scheduler/).

    lr(s) = lr * lr_lambda(kind, warmup_steps, total_steps, min_lr_ratio)(s)

``check_scheduler`` runs on the config alone (``jina5.train.build``, before any model is loaded, and
when ``EmbeddingModule`` is built); ``lr_scheduler`` is the step-wise ``LambdaLR`` that
``EmbeddingModule.configure_optimizers`` returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

SCHEDULE_KINDS = ("constant", "linear", "cosine")
SCHEDULER_KEYS = ("kind", "warmup_steps", "min_lr_ratio", "total_steps")


def check_scheduler(cfg: Mapping) -> None:
    """Raise ValueError naming the ``scheduler`` config key that is unknown or out of range, with the
    valid values: ``kind`` in :data:`SCHEDULE_KINDS`, ``warmup_steps`` a whole number >= 0,
    ``min_lr_ratio`` in [0, 1], ``total_steps`` None or a whole number >= 1. Run by ``jina5.train.build``
    before any model is loaded (and when the module is built), so a typo
    (``scheduler.kind=cosin``) fails before any data loading or teacher caching, not at the first step."""
    unknown = sorted(set(cfg) - set(SCHEDULER_KEYS))
    if unknown:
        raise ValueError(f"unknown scheduler config keys {unknown}; the keys are {list(SCHEDULER_KEYS)}")
    kind = cfg.get("kind", "constant")
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"scheduler.kind must be one of {' | '.join(SCHEDULE_KINDS)}, got {kind!r}")
    warmup, ratio, total = cfg.get("warmup_steps", 0), cfg.get("min_lr_ratio", 0.0), cfg.get("total_steps")
    if not is_count(warmup, 0):
        raise ValueError(f"scheduler.warmup_steps must be an integer >= 0, got {warmup!r}")
    if not is_number(ratio) or not 0.0 <= ratio <= 1.0:
        raise ValueError(f"scheduler.min_lr_ratio must be a number in [0, 1], got {ratio!r}")
    if total is not None and not is_count(total, 1):
        raise ValueError(
            f"scheduler.total_steps must be null (trainer.max_steps) or an integer >= 1, got {total!r}"
        )


def is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def is_count(x: object, minimum: int) -> bool:
    """A whole number (an int, or a float such as 1e2) >= ``minimum``."""
    return is_number(x) and float(x).is_integer() and x >= minimum


def lr_lambda(
    kind: str, warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> Callable[[int], float]:
    """Multiplier of the base lr at optimizer step s: linear warmup to 1 over ``warmup_steps``, then
    ``constant``: 1; ``linear``: 1 -> min_ratio; ``cosine``: min_ratio + (1 - min_ratio) (1 + cos(pi p)) / 2,
    with p = (s - warmup) / (total - warmup) the fraction of the decay done."""
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"scheduler.kind must be one of {' | '.join(SCHEDULE_KINDS)}, got {kind!r}")

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        p = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        decay = 1 - p if kind == "linear" else 0.5 * (1 + math.cos(math.pi * p))
        return min_ratio + (1 - min_ratio) * decay

    return f


def lr_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Mapping, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The ``LambdaLR`` of the ``scheduler`` config ``cfg`` over ``total_steps`` optimizer steps."""
    schedule = lr_lambda(
        cfg.get("kind", "constant"),
        int(cfg.get("warmup_steps", 0)),
        total_steps,
        float(cfg.get("min_lr_ratio", 0.0)),
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
